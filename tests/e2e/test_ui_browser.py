"""The /ui monitor page end to end: a real runtime, a real headless chromium.

The browser can reach the runtime and nothing else (dead proxy, no DNS), and the
DevTools network log must show no request to any other origin.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from smartcolab.runtime.ui import page_url
from support.runtime_proc import RuntimeProc, start_runtime
from support.ui_helpers import artifacts_dir, requested_urls, wait_for

LOOP_JOB = "import time\nfor i in range(3000):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.1)\n"


# Draws a 96x48 gradient PNG in the kernel (no plotting library needed) and displays it.
IMAGE_JOB = """import struct, zlib
from IPython.display import Image, display

w, h = 96, 48  # a gradient, one filter byte per row
raw = b"".join(b"\\0" + bytes(v for x in range(w) for v in (x * 255 // w, y * 255 // h, 160))
               for y in range(h))

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
display(Image(data=png))
print("drawn")
"""
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled", "lost"}


@pytest.fixture(scope="module")
def ui_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    """A runtime of this module's own, so other tests' jobs do not show up in the list."""
    proc = start_runtime(Path(tmp_path_factory.mktemp("ui-runtime")))
    try:
        yield proc
    finally:
        proc.stop()


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    return str(found[0].get_attribute("textContent")) if found else ""


def is_hidden(driver: Any, element_id: str) -> bool:
    return bool(driver.execute_script(f"return document.getElementById('{element_id}').hidden"))


def assert_only_runtime_requests(driver: Any, runtime: RuntimeProc) -> list[str]:
    urls = requested_urls(driver)
    assert urls, "the DevTools network log recorded nothing"
    strangers = [u for u in urls if not (u.startswith(runtime.url + "/") or u.startswith("data:"))]
    assert strangers == [], f"the page requested something besides the runtime: {strangers}"
    assert not [u for u in urls if runtime.secret in u], "the secret appeared in a request URL"
    return urls


def log_in_with_form(driver: Any, runtime: RuntimeProc, secret: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{runtime.url}/ui")
    wait_for(driver, lambda d: not is_hidden(d, "login"), "the login form")
    box = driver.find_element(By.ID, "secret")
    box.send_keys(secret)
    driver.find_element(By.ID, "login-button").click()


def test_wrong_secret_shows_a_clear_message_and_no_data(ui_runtime: RuntimeProc,
                                                        browser: Any) -> None:
    log_in_with_form(browser, ui_runtime, "not-the-secret")
    message = wait_for(browser, lambda d: text_of(d, "#login-error"), "an error message")
    assert "refused this secret" in message and "401" in message
    assert is_hidden(browser, "app")
    assert browser.execute_script("return document.querySelectorAll('#jobs tbody tr, #charts svg').length") == 0
    assert browser.execute_script("return sessionStorage.length") == 0
    assert_only_runtime_requests(browser, ui_runtime)


def test_secret_in_fragment_signs_in_and_leaves_the_address_bar(ui_runtime: RuntimeProc,
                                                                browser: Any) -> None:
    browser.get(page_url(ui_runtime.url, ui_runtime.secret))
    wait_for(browser, lambda d: not is_hidden(d, "app"), "the monitor to open")
    wait_for(browser, lambda d: d.execute_script(
        "return document.querySelectorAll('#chart-cpu svg polyline').length") > 0, "the CPU chart")
    assert "#" not in browser.current_url and ui_runtime.secret not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('smartcolab.secret')") == ui_runtime.secret
    assert "GPU" in text_of(browser, "#charts")
    # Forgetting the secret removes it and every piece of data from the page.
    browser.find_element("id", "logout").click()
    wait_for(browser, lambda d: not is_hidden(d, "login"), "the login form again")
    assert browser.execute_script("return sessionStorage.length") == 0
    assert browser.execute_script("return document.querySelectorAll('#charts svg').length") == 0
    urls = assert_only_runtime_requests(browser, ui_runtime)
    assert any(u.startswith(f"{ui_runtime.url}/resources") for u in urls)


def submit(runtime: RuntimeProc, job_id: str, code: str) -> None:
    r = httpx2.post(f"{runtime.url}/jobs", headers=runtime.headers, timeout=30,
                    json={"job_id": job_id, "code": code, "timeout": 120, "client": "ui-test"})
    assert r.status_code in (200, 201, 202), r.text


def test_live_output_cancel_and_images(ui_runtime: RuntimeProc, browser: Any,
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from selenium.webdriver.common.by import By

    log_in_with_form(browser, ui_runtime, ui_runtime.secret)
    wait_for(browser, lambda d: not is_hidden(d, "app"), "the monitor to open")
    submit(ui_runtime, "ui-loop", LOOP_JOB)
    row = "#jobs tbody tr[data-job-id='ui-loop']"
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the job in the list")
    browser.execute_script(f"document.querySelector(\"{row}\").click()")  # rows re-render
    wait_for(browser, lambda d: "tick 3" in text_of(d, "#output"), "the job's first output")
    first = text_of(browser, "#output")
    wait_for(browser, lambda d: len(text_of(d, "#output")) > len(first) + 20, "the output to grow")
    assert text_of(browser, "#detail-status") == "running"
    assert "ui-test" in text_of(browser, "#detail-meta")
    # The code is shown highlighted: keywords and strings in their own spans.
    assert text_of(browser, "#code") == LOOP_JOB
    kinds = browser.execute_script(
        "return [...document.querySelectorAll('#code span')].map(s => s.className + ':' + s.textContent)")
    assert "kw:import" in kinds and "kw:for" in kinds and "bi:print" in kinds
    assert any(k.startswith("str:f'tick") for k in kinds)

    browser.find_element(By.ID, "cancel-job").click()
    wait_for(browser, lambda d: text_of(d, "#detail-status") == "cancelled", "the job to be cancelled")
    # Read in one script: the list is re-rendered every poll, so a found row may go stale.
    wait_for(browser, lambda d: d.execute_script(
        f'const r = document.querySelector("{row}"); return r && r.dataset.status') == "cancelled",
        "the list to show the cancel")
    assert browser.find_element(By.ID, "cancel-job").get_attribute("disabled") is not None
    grown = text_of(browser, "#output")
    time.sleep(0.5)
    assert text_of(browser, "#output") == grown, "output kept coming after the cancel"

    # Interrupt the session under a running job; Restart needs a second click.
    submit(ui_runtime, "ui-interrupt", LOOP_JOB)
    irow = "#jobs tbody tr[data-job-id='ui-interrupt']"
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, irow), "the second job")
    browser.execute_script(f"document.querySelector(\"{irow}\").click()")  # rows re-render
    wait_for(browser, lambda d: "tick 2" in text_of(d, "#output"), "the second job's output")
    restart = browser.find_element(By.CSS_SELECTOR, "#sessions tr[data-session='main'] .restart")
    restart.click()
    assert restart.text == "Confirm restart"
    browser.find_element(By.CSS_SELECTOR, "#sessions tr[data-session='main'] .interrupt").click()
    wait_for(browser, lambda d: text_of(d, "#detail-status") in TERMINAL, "the interrupt to end the job")
    assert text_of(browser, "#detail-status") != "succeeded"

    submit(ui_runtime, "ui-image", IMAGE_JOB)
    image_row = "#jobs tbody tr[data-job-id='ui-image']"
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, image_row), "the image job")
    browser.execute_script(f"document.querySelector(\"{image_row}\").click()")  # rows re-render
    wait_for(browser, lambda d: d.execute_script(
        "const i = document.querySelector('#images img'); return !!i && i.naturalWidth === 96"),
        "the job's image")
    wait_for(browser, lambda d: "drawn" in text_of(d, "#output"), "the image job's output")
    assert text_of(browser, "#detail-status") == "succeeded"
    wait_for(browser, lambda d: "idle" in text_of(d, "#sessions"), "the session to be idle")

    shot = artifacts_dir(tmp_path) / "ui-monitor.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    with capsys.disabled():
        print(f"\n[ui] screenshot: {shot}")
    assert_only_runtime_requests(browser, ui_runtime)


def test_gpu_charts_from_nvidia_smi(tmp_path: Path, browser: Any) -> None:
    """No GPU here: a stand-in ``nvidia-smi`` on PATH feeds the sampler real CSV."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, 81559, 40780, 73'\n")
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = start_runtime(tmp_path / "root", env=env)
    try:
        browser.get(page_url(proc.url, proc.secret))
        wait_for(browser, lambda d: d.execute_script(
            "return document.querySelectorAll('#chart-gpu-mem svg polyline').length") == 1,
            "the GPU memory chart")
        assert "39.8/80 GiB" in text_of(browser, "#chart-gpu-mem")
        assert "73 %" in text_of(browser, "#chart-gpu-util")
        assert "NVIDIA H100 80GB HBM3" in text_of(browser, "#res-note")
        assert_only_runtime_requests(browser, proc)
    finally:
        proc.stop()
