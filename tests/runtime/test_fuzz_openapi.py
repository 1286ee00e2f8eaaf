"""Fuzzing the runtime's OpenAPI with schemathesis against a real server on loopback.

At least 1,000 generated requests (valid and invalid data, with and without the
secret) must get no 5xx and no response that breaks the documented schema.  Set
``SMARTCOLAB_FUZZ_SCALE`` (default 1.0) to fuzz harder or lighter.  Two tests (with and
without the secret), so that parallel workers share the work; requests are generated
outside coverage's tracer (the server they reach is measured).

Kept bounded: long-poll waits are cut to 0 and job timeouts to a few seconds (the
code run by fuzzed jobs is random text), and the two operations that would end
the test's own access (``/shutdown``, ``/auth/rotate``) are left out here and
tested on their own elsewhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support.runtime_proc import RuntimeProc, start_runtime
from support.untraced import untraced

pytestmark = pytest.mark.slow

SCALE = float(os.environ.get("SMARTCOLAB_FUZZ_SCALE", "1.0"))
MIN_REQUESTS = 1000
JOB_TIMEOUT_CAP_S = 3.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
# (authenticated, generation mode, examples at scale 1)
PLAN = [
    (True, schemathesis.GenerationMode.POSITIVE, 350),
    (True, schemathesis.GenerationMode.NEGATIVE, 300),
    (False, schemathesis.GenerationMode.POSITIVE, 200),
    (False, schemathesis.GenerationMode.NEGATIVE, 200),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    # Limits that would throttle a fuzzer hitting one address are lifted here;
    # they have their own tests (test_limits.py).
    proc = start_runtime(Path(tmp_path_factory.mktemp("fuzz")), "--rate-limit", "0",
                         "--lockout-failures", "0", "--max-sessions", "3",
                         "--kill-grace", "1")
    try:
        yield proc
    finally:
        proc.stop()


def bounded(case: schemathesis.Case) -> bool:
    """Keep a fuzzed request from holding the test: no long-polls, short job timeouts.

    Returns True when the case was changed (it may then no longer be invalid).
    """
    changed = False
    query: dict[str, Any] | None = case.query if isinstance(case.query, dict) else None
    if query and isinstance(query.get("wait"), (int, float)) and query["wait"] > 0:
        query["wait"] = 0
        changed = True
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and case.path == "/jobs" and case.method.upper() == "POST":
        timeout = body.get("timeout")
        if timeout is None or (isinstance(timeout, (int, float)) and timeout > JOB_TIMEOUT_CAP_S):
            body["timeout"] = JOB_TIMEOUT_CAP_S
            changed = True
    return changed


def fuzz_round(source: Any, server: RuntimeProc, sent: list[tuple[str, int]], *, authed: bool,
               mode: schemathesis.GenerationMode, examples: int) -> None:
    """Send ``examples`` generated requests; ``source`` is the schema or one operation."""
    headers = server.headers if authed else {}
    # Invalid data sent with the secret must be refused (with it, nothing else refuses).
    checks = [*CHECKS, negative_data_rejection] if authed else CHECKS

    @settings(max_examples=examples, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(case=source.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case) -> None:
        changed = bounded(case)
        response = case.call(base_url=server.url, headers=headers, timeout=60)
        sent.append((case.operation.label, response.status_code))
        case.validate_response(response, checks=CHECKS if changed else checks, headers=headers)

    fuzz()


@pytest.mark.parametrize("authed", [True, False], ids=["with-secret", "without-secret"])
def test_fuzz_openapi(server: RuntimeProc, authed: bool) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json",
                                           headers=server.headers, timeout=30)
    schema = schema.exclude(path=["/shutdown", "/auth/rotate"])
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 10, [o.label for o in operations]
    plan = [(mode, max(1, int(examples * SCALE))) for with_secret, mode, examples in PLAN
            if with_secret is authed]
    sent: list[tuple[str, int]] = []
    started = time.monotonic()
    with untraced():
        for mode, examples in plan:
            fuzz_round(schema, server, sent, authed=authed, mode=mode, examples=examples)
        if authed:
            # The schema's strategy draws operations unevenly (hypothesis favours the first
            # branches of a one_of): one of 31 went unsent in 650 draws. Those left out get
            # a few valid requests of their own, so that every operation is exercised every
            # run (invalid ones cannot always be made for one operation alone: hypothesis
            # finds none for an operation with nothing to get wrong).
            missed = [op for op in operations if op.label not in {label for label, _ in sent}]
            print(f"\nfuzz: topped up {[op.label for op in missed]}")
            for op in missed:
                fuzz_round(op, server, sent, authed=authed,
                           mode=schemathesis.GenerationMode.POSITIVE, examples=5)
    elapsed = time.monotonic() - started
    statuses = sorted({status for _, status in sent})
    covered = {label for label, _ in sent}
    print(f"\nfuzz: {len(sent)} requests in {elapsed:.1f} s over {len(covered)} operations; "
          f"statuses seen: {statuses}")
    if SCALE >= 1.0:
        # Both tests together: at least MIN_REQUESTS (hypothesis may stop a little short).
        assert len(sent) >= sum(n for _, n in plan) * MIN_REQUESTS / sum(e for *_, e in PLAN)
    assert all(status < 500 for _, status in sent)
    if authed:  # every operation was exercised (by the 650 requests; the 400 without the
        # secret are not held to it: a few hundred random draws may miss one)
        assert covered == {op.label for op in operations}, \
            sorted({op.label for op in operations} - covered)
    assert server.proc.poll() is None  # and the server is still up
