"""Client address resolution and the limiter's bookkeeping, as plain functions."""

from __future__ import annotations

import pytest

from smartcolab.runtime.config import DEFAULT_TRUSTED_PROXIES
from smartcolab.runtime.security.clientaddr import (
    ClientResolver,
    parse_address,
    parse_networks,
)
from smartcolab.runtime.security.gate import AuthLockout
from smartcolab.runtime.security.limits import RateLimiter


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, object]:
    return {"type": "http", "client": (peer, 5555) if peer else None,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}


# Loopback configured as a trusted proxy (--trusted-proxy), to test the header parsing.
LOCAL = ClientResolver(["127.0.0.0/8", "::1/128"], [])


def test_by_default_no_local_process_is_a_proxy() -> None:
    """Only the tunnel agent the runtime started is believed (issue 16, item 11)."""
    default = ClientResolver(DEFAULT_TRUSTED_PROXIES, [])
    assert default.client(scope("127.0.0.1", ("X-Forwarded-For", "198.51.100.2"))) == "127.0.0.1"
    assert default.client(scope("::1", ("Forwarded", "for=198.51.100.2"))) == "::1"


@pytest.mark.parametrize(("peer", "headers", "expected"), [
    ("203.0.113.5", [("X-Forwarded-For", "10.0.0.1")], "203.0.113.5"),  # untrusted peer
    ("127.0.0.1", [], "127.0.0.1"),
    ("127.0.0.1", [("X-Forwarded-For", "198.51.100.2")], "198.51.100.2"),
    ("127.0.0.1", [("X-Forwarded-For", "1.1.1.1, 198.51.100.2")], "198.51.100.2"),
    ("127.0.0.1", [("X-Forwarded-For", "198.51.100.2, 127.0.0.1")], "198.51.100.2"),
    ("127.0.0.1", [("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "9.9.9.9")], "9.9.9.9"),
    ("::1", [("Forwarded", 'for="[2001:db8::7]:4711";proto=https')], "2001:db8::7"),
    ("127.0.0.1", [("Forwarded", "for=192.0.2.60;proto=http, for=198.51.100.17")],
     "198.51.100.17"),
    ("127.0.0.1", [("X-Forwarded-For", "garbage")], "127.0.0.1"),
    ("127.0.0.1", [("X-Forwarded-For", "1.2.3.4, garbage")], "127.0.0.1"),
    ("127.0.0.1", [("X-Forwarded-For", "203.0.113.9:8080")], "203.0.113.9"),
    ("::ffff:127.0.0.1", [("X-Forwarded-For", "203.0.113.9")], "203.0.113.9"),
    (None, [], "unknown"),
])
def test_client_address(peer: str | None, headers: list[tuple[str, str]], expected: str) -> None:
    assert LOCAL.client(scope(peer, *headers)) == expected


def test_allowlist_matching() -> None:
    r = ClientResolver(DEFAULT_TRUSTED_PROXIES, ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"])
    assert r.allowed("10.200.3.4") and r.allowed("2001:db8::1") and r.allowed("192.0.2.1")
    assert not r.allowed("192.0.2.2") and not r.allowed("11.0.0.1")
    assert not r.allowed("unknown") and not r.allowed("2001:db9::1")
    assert ClientResolver([], []).allowed("unknown")


def test_bad_networks_name_the_culprit() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        parse_networks(["10.0.0.0/8", "nope"])
    assert parse_address('"[::1]:80"') is not None and parse_address("x.y") is None


def test_rate_limiter_refills() -> None:
    rl = RateLimiter(rate_per_s=2, burst=3, max_clients=10)
    assert [rl.acquire("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.acquire("a", 0.0) == pytest.approx(0.5)
    assert rl.acquire("b", 0.0) == 0.0
    assert rl.acquire("a", 0.6) == 0.0  # refilled 1.2 tokens
    assert RateLimiter(0, 1, 10).acquire("a", 0.0) == 0.0  # disabled


def test_rate_limiter_memory_is_bounded() -> None:
    rl = RateLimiter(rate_per_s=1, burst=1, max_clients=100)
    for i in range(1000):
        rl.acquire(f"c{i}", 0.0)
    assert len(rl._buckets) == 100


def test_lockout_window_and_expiry() -> None:
    lo = AuthLockout(failures=3, window_s=10, lockout_s=30, max_clients=10)
    assert not lo.failure("a", 0) and not lo.failure("a", 1)
    assert not lo.failure("a", 20)  # the first two fell out of the window
    assert not lo.failure("a", 21)
    assert lo.failure("a", 22)
    assert lo.remaining("a", 23) == pytest.approx(29)
    assert lo.remaining("a", 60) == 0.0
    assert lo.remaining("b", 23) == 0.0
    assert not AuthLockout(0, 10, 30, 10).failure("a", 0)  # disabled
