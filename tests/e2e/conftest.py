"""Fixtures shared by the end-to-end browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.ui_helpers import chromium_driver


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium of the test's own (skips when chromium is not installed)."""
    with chromium_driver() as driver:
        yield driver
