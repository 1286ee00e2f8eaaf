"""Test-side work that measures nothing of ours, out of the coverage tracer's way."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def untraced() -> Iterator[None]:
    """This thread without its trace function for a while.

    For work done in the test process that runs none of our code, such as generating
    requests with hypothesis and schemathesis, which coverage's tracer slows 2-3 fold;
    what that work drives in our own processes (a runtime server) is still measured
    there.  Other threads keep theirs; coverage's C tracer takes the restored one back
    as its fast C trace function.
    """
    previous = sys.gettrace()
    sys.settrace(None)
    try:
        yield
    finally:
        sys.settrace(previous)
