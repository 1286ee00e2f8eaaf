"""One retry policy for everything that talks to a runtime, built on tenacity.

A ``RetryPolicy`` says how often and how patiently to try again: at most ``attempts``
tries within ``total_s`` seconds, waiting ``initial_s * 2**(n-1)`` plus up to
``jitter_s`` of random jitter after the n-th failure in a row, never more than
``max_s`` (tenacity's ``wait_exponential_jitter``).  A server's ``Retry-After`` hint,
when an error carries one, replaces the computed wait (still capped at ``max_s``).

Two ways to use it:

* ``policy.retrying(...)``: a tenacity ``AsyncRetrying`` for a call that can simply be
  repeated (a signed request); it sleeps with ``anyio.sleep``, so it runs under any
  anyio backend and a test can pass a fake ``sleep``.  ``policy.call(fn)`` is the same
  for one coroutine function, with the first try outside tenacity (below).
* ``policy.delay(failures)``: the wait alone, for loops that keep their own state
  between tries (a resumable transfer continues from the bytes it has, a worker
  thread waits on its stop event instead of sleeping).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from smartcolab.shared.errors import (
    NotARuntime,
    RateLimited,
    RuntimeUnreachable,
    TunnelDown,
    Unavailable,
)

__all__ = ["JUPYTER_RETRY", "NO_RETRY", "RetryPolicy", "retryable"]

SleepFn = Callable[[float], Awaitable[None]]
T = TypeVar("T")
# tenacity computes a wait from a call state, which needs a retrying object to belong to.
_HOST = AsyncRetrying()
log = logging.getLogger(__name__)


def _say_retry(state: RetryCallState) -> None:
    # A reconnection in progress: an info line (and an MCP log notification, mcp/extensions/logs.py).
    exc = state.outcome.exception() if state.outcome else None
    pause = state.next_action.sleep if state.next_action else 0.0
    log.info("retrying in %.1f s after %s (attempt %d)", pause, exc, state.attempt_number)


def retryable(exc: BaseException) -> bool:
    """Worth another try: the runtime was unreachable, rate-limited us, or is restarting
    a kernel.  Any other error would only repeat, and so would an offline tunnel or a web
    page in the runtime's place: their URL does not come back."""
    if isinstance(exc, (TunnelDown, NotARuntime)):
        return False
    if isinstance(exc, RuntimeUnreachable):
        return not _untrusted_certificate(exc)
    if isinstance(exc, RateLimited):
        return True
    return isinstance(exc, Unavailable) and exc.code in ("unavailable", "kernel_unavailable")


def _untrusted_certificate(exc: BaseException) -> bool:
    """The runtime was reached but its TLS certificate is not trusted: that repeats
    until the user trusts it (``SSL_CERT_FILE``), so it is said at once."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry; immutable, shared freely."""

    attempts: int = 6
    initial_s: float = 0.25
    max_s: float = 8.0
    total_s: float = 60.0
    jitter_s: float = 1.0

    def delay(self, failures: int, hint: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (counting from 1)."""
        if hint is not None and hint > 0:
            return float(min(hint, self.max_s))
        state = RetryCallState(_HOST, None, (), {})
        state.attempt_number = max(1, failures)
        return float(self._backoff()(state))

    def retrying(self, retry_on: Callable[[BaseException], bool] = retryable, *,
                 sleep: SleepFn = anyio.sleep) -> AsyncRetrying:
        """``async for attempt in policy.retrying(): with attempt: ...``; the last
        error is re-raised as is when the policy gives up."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.total_s),
            wait=self._wait, retry=retry_if_exception(retry_on), sleep=sleep, reraise=True,
            before_sleep=_say_retry)

    async def call(self, fn: Callable[[], Awaitable[T]],
                   retry_on: Callable[[BaseException], bool] = retryable, *,
                   sleep: SleepFn = anyio.sleep) -> T:
        """``await fn()``, retried as ``retrying`` would.

        The first try runs outside tenacity: building and stepping its async retrier
        (an ``inspect`` of every callback per step) cost about as much CPU as a whole
        request on the lean loopback lane, and almost every call succeeds at once.  A
        first failure worth retrying hands over to ``retrying``, which is shown that
        failure as its own first try, so the waits, the count, the log lines and the
        total time (less the time the first try took) are the same.
        """
        started = time.monotonic()
        try:
            return await fn()
        except Exception as exc:
            if self.attempts <= 1 or not retry_on(exc):
                raise
            first: Exception | None = exc
        rest = replace(self, total_s=max(0.0, self.total_s - (time.monotonic() - started)))
        async for attempt in rest.retrying(retry_on, sleep=sleep):
            with attempt:
                if first is not None:
                    failed, first = first, None
                    raise failed
                return await fn()
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    def _backoff(self) -> wait_exponential_jitter:
        return wait_exponential_jitter(multiplier=self.initial_s, max=self.max_s,
                                       jitter=self.jitter_s)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = getattr(exc, "retry_after", None)
        if isinstance(hinted, (int, float)) and hinted > 0:
            return self.delay(state.attempt_number, float(hinted))
        return float(self._backoff()(state))


# One try only: for calls that are not safe to repeat, and for diagnostics that
# want to see the first failure as it is.
NO_RETRY = RetryPolicy(attempts=1)

# The Jupyter Server backend's file chunks and kernel WebSocket reconnects: five quick
# tries (0.2 s doubling, at most 2 s apart); its REST calls carry their own timeouts.
JUPYTER_RETRY = RetryPolicy(attempts=5, initial_s=0.2, max_s=2.0, jitter_s=0.2)
