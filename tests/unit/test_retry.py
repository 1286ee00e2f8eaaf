"""The one retry policy (client/retry.py) with a fake sleep, and the HTTP client's use of it
over an httpx MockTransport (no socket)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import httpx2
import pytest

from smartcolab.client.http.client import RuntimeClient
from smartcolab.client.retry import NO_RETRY, RetryPolicy, retryable
from smartcolab.shared.errors import (
    IncompatibleRuntime,
    InvalidInput,
    KernelUnavailable,
    LowMemory,
    NotARuntime,
    RateLimited,
    RuntimeNotAnswering,
    RuntimeUnreachable,
    TunnelDown,
)
from smartcolab.shared.protocol import API_VERSION, H_API_VERSION, H_NONCE

pytestmark = pytest.mark.anyio
Runner = Callable[["RetryPolicy", list[BaseException], "FakeSleep"], Awaitable[int]]


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(params=["retrying", "call"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Fail with ``failures`` in turn, then succeed; the number of tries.  Both ways of
    using a policy: tenacity's loop (``retrying``) and ``call`` (first try outside it)."""

    async def through(policy: RetryPolicy, failures: list[BaseException],
                      sleep: FakeSleep) -> int:
        tries = 0

        async def one() -> None:
            nonlocal tries
            tries += 1
            if failures:
                raise failures.pop(0)

        if request.param == "call":
            await policy.call(one, sleep=sleep)
        else:
            async for attempt in policy.retrying(sleep=sleep):
                with attempt:
                    await one()
        return tries

    return through


def test_delay_doubles_from_initial_and_is_capped() -> None:
    policy = RetryPolicy(initial_s=0.5, max_s=3.0, jitter_s=0.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 10)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(initial_s=0.5, max_s=100.0, jitter_s=0.25)
    for n in (1, 2, 3):
        assert 0.5 * 2 ** (n - 1) <= jittered.delay(n) <= 0.5 * 2 ** (n - 1) + 0.25


def test_a_retry_after_hint_replaces_the_backoff_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_s=0.5, max_s=3.0, jitter_s=0.0)
    assert policy.delay(1, hint=2.5) == 2.5
    assert policy.delay(1, hint=60.0) == 3.0
    assert policy.delay(2, hint=0.0) == 1.0


def test_which_errors_are_worth_another_try() -> None:
    assert retryable(RuntimeUnreachable("down"))
    assert retryable(RuntimeNotAnswering("a tunnel's 524"))
    assert not retryable(TunnelDown("ERR_NGROK_3200"))  # that URL does not come back
    assert not retryable(NotARuntime("a web page"))
    assert retryable(RateLimited("slow down"))
    assert retryable(KernelUnavailable("restarting"))
    assert not retryable(LowMemory("full"))  # another try would only repeat
    assert not retryable(InvalidInput("bad"))
    assert not retryable(ValueError("ours"))


def test_an_untrusted_certificate_is_not_worth_another_try() -> None:
    import ssl

    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed")
        except ssl.SSLError as tls:
            raise ConnectionError("connect failed") from tls
    except ConnectionError as connect:
        unreachable = RuntimeUnreachable("cannot reach the runtime")
        unreachable.__cause__ = connect
    assert not retryable(unreachable)
    assert retryable(RuntimeUnreachable("cannot reach the runtime"))


async def test_retries_until_success_with_the_policy_waits(run: Runner) -> None:
    sleep = FakeSleep()
    policy = RetryPolicy(attempts=5, initial_s=0.1, max_s=10.0, jitter_s=0.0)
    tries = await run(policy, [RuntimeUnreachable("a"), RuntimeUnreachable("b")], sleep)
    assert tries == 3
    assert sleep.waits == [0.1, 0.2]


async def test_gives_up_after_attempts_and_reraises_the_last_error(run: Runner) -> None:
    sleep = FakeSleep()
    policy = RetryPolicy(attempts=3, initial_s=0.1, jitter_s=0.0)
    errors: list[BaseException] = [RuntimeUnreachable(f"try {n}") for n in range(5)]
    with pytest.raises(RuntimeUnreachable, match="try 2"):
        await run(policy, errors, sleep)
    assert len(sleep.waits) == 2


async def test_a_hint_on_the_error_sets_the_wait(run: Runner) -> None:
    sleep = FakeSleep()
    limited = RateLimited("slow down", retry_after=1.5)
    await run(RetryPolicy(attempts=3, initial_s=0.1, jitter_s=0.0), [limited], sleep)
    assert sleep.waits == [1.5]


async def test_other_errors_and_no_retry_fail_at_once(run: Runner) -> None:
    sleep = FakeSleep()
    with pytest.raises(InvalidInput):
        await run(RetryPolicy(), [InvalidInput("bad")], sleep)
    with pytest.raises(RuntimeUnreachable):
        await run(NO_RETRY, [RuntimeUnreachable("down")], sleep)
    assert sleep.waits == []


async def test_total_time_bounds_the_tries(run: Runner) -> None:
    sleep = FakeSleep()
    policy = RetryPolicy(attempts=100, initial_s=0.1, total_s=0.0, jitter_s=0.0)
    with pytest.raises(RuntimeUnreachable):
        await run(policy, [RuntimeUnreachable("down")] * 3, sleep)
    assert sleep.waits == []


# ---------------------------------------------------------------- the HTTP client
FAST = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.001, jitter_s=0.0)


def unavailable_then_ok(seen: list[httpx2.Request]) -> httpx2.MockTransport:
    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx2.Response(503, json={"error": {
                "code": "kernel_unavailable", "message": "restarting", "details": {}}})
        return httpx2.Response(200, json={"echo": dict(request.url.params)})
    return httpx2.MockTransport(handler)


async def test_a_get_is_retried_and_each_try_is_signed_afresh() -> None:
    seen: list[httpx2.Request] = []
    async with RuntimeClient("http://runtime.test", "s3cret", retry=FAST,
                             transport=unavailable_then_ok(seen)) as client:
        response = await client.request("GET", "/jobs", params={"limit": 5, "session": None})
    assert json.loads(response.content) == {"echo": {"limit": "5"}}  # None left out
    assert len(seen) == 2
    assert seen[0].headers[H_NONCE] != seen[1].headers[H_NONCE]


async def test_a_post_is_not_retried_unless_idempotent() -> None:
    seen: list[httpx2.Request] = []
    async with RuntimeClient("http://runtime.test", "s3cret", retry=FAST,
                             transport=unavailable_then_ok(seen)) as client:
        with pytest.raises(KernelUnavailable):
            await client.request("POST", "/sessions", json={"name": "x"})
        assert len(seen) == 1
        await client.request("POST", "/sessions/x/restart", idempotent=True)
    assert len(seen) == 2


async def test_a_streamed_request_uses_the_same_builder() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, content=b"x" * 10)

    client = RuntimeClient("http://runtime.test", "s3cret", transport=httpx2.MockTransport(handler))
    async with client, client.stream("GET", "/files/content",
                                     params={"path": "a b&c", "offset": None}) as resp:
        body = await resp.aread()
    assert body == b"x" * 10
    assert dict(seen[0].url.params) == {"path": "a b&c"}
    assert seen[0].headers["User-Agent"] == "smartcolab-client"
    assert H_NONCE in seen[0].headers


async def test_a_runtime_of_another_api_version_is_refused_clearly() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={}, headers={H_API_VERSION: "999"})

    async with RuntimeClient("http://runtime.test", "s3cret", retry=FAST,
                             transport=httpx2.MockTransport(handler)) as client:
        with pytest.raises(IncompatibleRuntime, match="speaks API version 999") as info:
            await client.request("GET", "/probe")
    assert info.value.details["client_api"] == API_VERSION
