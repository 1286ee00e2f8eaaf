"""Property: the HMAC verifier accepts what our client signs, and nothing one bit off.

Requests are signed by the real client (``client.http.signing.HmacAuth``) and checked by
the real verifier (``runtime.security.Authenticator``) through a Starlette
``Request`` built from the very bytes a server would receive.  Flipping any single
bit of the method, path, query, body or a signed header must get a 401; the
untouched request must then pass (so the refusal was not a replay refusal).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, replace

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from smartcolab.client.http.signing import HmacAuth
from smartcolab.runtime.security.auth import Authenticator
from smartcolab.shared.errors import Unauthorized
from smartcolab.shared.protocol import H_CONTENT_SHA256, H_NONCE, H_SIGNATURE, H_TIMESTAMP

SECRET = "property-test-secret-0123456789abcdef"
SIGNED_HEADERS = (H_TIMESTAMP, H_NONCE, H_CONTENT_SHA256, H_SIGNATURE)
FIELDS = ("method", "path", "query", "body", *SIGNED_HEADERS)


@dataclass(frozen=True)
class Wire:
    """A request as the server sees it: raw bytes of each part."""

    method: bytes
    path: bytes
    query: bytes
    body: bytes
    headers: dict[str, bytes]

    def get(self, name: str) -> bytes:
        return self.headers[name] if name in self.headers else getattr(self, name)

    def with_field(self, name: str, value: bytes) -> Wire:
        if name in self.headers:
            return replace(self, headers={**self.headers, name: value})
        return replace(self, **{name: value})


def sign_with_client(method: str, path: str, params: dict[str, str], body: bytes) -> Wire:
    request = httpx2.Request(method, "http://runtime.test" + path, params=params, content=body)
    flow = HmacAuth(SECRET).auth_flow(request)
    signed = next(flow)
    raw_path, _, raw_query = signed.url.raw_path.partition(b"?")
    return Wire(method=signed.method.encode(), path=raw_path, query=raw_query, body=body,
                headers={h: signed.headers[h].encode("latin-1") for h in SIGNED_HEADERS})


def to_request(wire: Wire) -> Request:
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": wire.body, "more_body": False}

    scope = {
        "type": "http", "method": wire.method.decode("latin-1"), "scheme": "http",
        "path": wire.path.decode("latin-1"), "raw_path": wire.path,
        "query_string": wire.query, "root_path": "", "server": ("runtime.test", 80),
        "client": ("127.0.0.1", 40000), "state": {},
        "headers": [(k.lower().encode(), v) for k, v in wire.headers.items()],
    }
    return Request(scope, receive)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def accepted(loop: asyncio.AbstractEventLoop, auth: Authenticator, wire: Wire) -> bool:
    try:
        loop.run_until_complete(auth.require(to_request(wire)))
    except Unauthorized:
        return False
    return True


def flip(data: bytes, bit: int) -> bytes:
    index = bit // 8 % len(data)
    return data[:index] + bytes([data[index] ^ (1 << (bit % 8))]) + data[index + 1:]


safe_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                    max_size=30)
requests = st.builds(
    sign_with_client,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.lists(st.text("abcxyz-_.~%é 09", min_size=1, max_size=8), min_size=1,
                  max_size=4).map(lambda parts: "/" + "/".join(parts)),
    params=st.dictionaries(safe_text.filter(bool), safe_text, max_size=3),
    body=st.binary(max_size=512),
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wire=requests, field=st.sampled_from(FIELDS), bit=st.integers(min_value=0))
def test_any_flipped_bit_is_rejected(loop: asyncio.AbstractEventLoop, wire: Wire, field: str,
                                     bit: int) -> None:
    auth = Authenticator(SECRET)
    original = wire.get(field)
    if not original:  # nothing to flip (empty body or query): append a byte instead
        tampered = wire.with_field(field, bytes([1 << (bit % 8)]))
    else:
        tampered = wire.with_field(field, flip(original, bit))
    assert not accepted(loop, auth, tampered), f"accepted with {field} tampered"
    # A fresh verifier: the tampered request may have spent the nonce (it is spent
    # once the headers verify, before the body is read).
    fresh = Authenticator(SECRET)
    assert accepted(loop, fresh, wire), "the untouched request must pass"
    assert not accepted(loop, fresh, wire), "the same nonce twice is a replay"


@settings(max_examples=100, deadline=None)
@given(wire=requests)
def test_another_secret_is_rejected(loop: asyncio.AbstractEventLoop, wire: Wire) -> None:
    assert not accepted(loop, Authenticator(SECRET + "x"), wire)
    assert accepted(loop, Authenticator(SECRET), wire)


def test_nan_timestamp_is_rejected(loop: asyncio.AbstractEventLoop) -> None:
    """float('nan') passes every window comparison; the verifier must not use it."""
    import hashlib

    from smartcolab.shared.protocol import canonical_request, sign

    digest = hashlib.sha256(b"").hexdigest()
    headers = {H_TIMESTAMP: b"nan", H_NONCE: b"n1", H_CONTENT_SHA256: digest.encode(),
               H_SIGNATURE: sign(SECRET, canonical_request("GET", "/probe", "", digest,
                                                           "nan", "n1")).encode()}
    wire = Wire(b"GET", b"/probe", b"", b"", headers)
    assert not accepted(loop, Authenticator(SECRET), wire)
