"""The pluggable request authoriser of the jupyter kind: what every REST call carries."""

from __future__ import annotations

import httpx2
import pytest

from smartcolab.client.jupyter.kernel import JupyterRest, RequestAuth

pytestmark = pytest.mark.anyio


class ProxyAuth(RequestAuth):
    """A proxy token as a header and a query parameter, renewed by ``fresh``."""

    def __init__(self) -> None:
        super().__init__(None)
        self.value, self.renewals = "t0", 0

    def headers(self) -> dict[str, str]:
        return {"X-Proxy-Token": self.value}

    def params(self) -> dict[str, str]:
        return {"proxy-token": self.value, "authuser": "0"}

    async def fresh(self) -> None:
        self.renewals += 1
        self.value = f"t{self.renewals}"


async def test_rest_calls_carry_the_authorisers_headers_and_params() -> None:
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"ok": True})

    auth = ProxyAuth()
    rest = JupyterRest("http://127.0.0.1:9", None, auth=auth)
    await rest.http.aclose()
    rest.http = httpx2.AsyncClient(base_url=rest.url, auth=rest.auth,
                                   transport=httpx2.MockTransport(answer))
    await rest.call("GET", "/api/sessions", params={"x": "1"})
    await rest.call("GET", "/api/kernels")
    await rest.aclose()
    # Renewed before each request, and the renewed value is what went out.
    assert [r.headers["X-Proxy-Token"] for r in seen] == ["t1", "t2"]
    assert seen[0].url.params["proxy-token"] == "t1" and seen[0].url.params["x"] == "1"
    assert seen[1].url.params["authuser"] == "0"
    assert "Authorization" not in seen[0].headers


async def test_default_authoriser_sends_the_server_token() -> None:
    seen: list[httpx2.Request] = []
    rest = JupyterRest("http://127.0.0.1:9", "secret-token")
    await rest.http.aclose()
    rest.http = httpx2.AsyncClient(base_url=rest.url, auth=rest.auth, transport=httpx2.MockTransport(
        lambda r: seen.append(r) or httpx2.Response(204)))
    await rest.call("DELETE", "/api/kernels/k")
    await rest.aclose()
    assert seen[0].headers["Authorization"] == "token secret-token"
    assert rest.headers == {"Authorization": "token secret-token"}
    assert not seen[0].url.params
