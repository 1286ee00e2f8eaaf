"""Headless Debian chromium driven by Selenium, for the /ui page tests.

Why Selenium: it drives the system's ``/usr/bin/chromium`` through Debian's
``chromedriver`` with no browser download (``playwright install`` cannot run here),
is one pure-Python wheel, and exposes Chrome's DevTools network log.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
INSTALL_HINT = "install it with: apt-get install -y chromium chromium-driver (scripts/test.sh does)"


def _first(paths: tuple[str, ...], name: str) -> str | None:
    for p in paths:
        if Path(p).is_file() and os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def browser_paths() -> tuple[str, str]:
    """Chromium and chromedriver, or skip the test saying how to install them."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[test]'")
    chromium = _first(CHROMIUM_CANDIDATES, "chromium")
    driver = _first(CHROMEDRIVER_CANDIDATES, "chromedriver")
    if chromium is None or driver is None:
        pytest.skip(f"no headless chromium/chromedriver on this machine; {INSTALL_HINT}")
    return chromium, driver


def dead_port() -> int:
    """A loopback port nobody listens on: the proxy every non-runtime request is sent to."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextmanager
def chromium_driver(runtime_host: str = "127.0.0.1") -> Iterator[Any]:
    """A headless chromium that can reach ``runtime_host`` and nothing else."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = browser_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-extensions",
                 "--window-size=1400,1100",
                 # Every request not to the runtime goes to a dead proxy, and no name resolves.
                 f"--proxy-server=http://127.0.0.1:{dead_port()}",
                 f"--proxy-bypass-list={runtime_host}",
                 f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {runtime_host}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # A fixed driver path: Selenium Manager (which would download drivers) never runs.
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    """URLs of every request the page made since the last call (DevTools network log)."""
    urls: list[str] = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def artifacts_dir(tmp_path: Path) -> Path:
    """Where screenshots are kept: $SMARTCOLAB_ARTIFACTS, else the test's tmp dir."""
    base = os.environ.get("SMARTCOLAB_ARTIFACTS")
    path = Path(base) if base else tmp_path / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


WAIT_S = 60.0  # a deadline, not a speed check: 20 s ran out on a loaded 2-core machine


def wait_for(driver: Any, condition: Any, what: str, timeout: float = WAIT_S) -> Any:
    """Until ``condition(driver)`` is truthy; a timeout names what and shows the console."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))
    except Exception as exc:
        logs = [e["message"] for e in driver.get_log("browser")]
        raise AssertionError(f"timed out waiting for {what}; browser console: {logs}") from exc
