"""The /ui page's layout and first-contact behaviour, measured in a real headless chromium.

Geometry comes from ``getBoundingClientRect`` at fixed window sizes; every test keeps a
screenshot under ``$SMARTCOLAB_ARTIFACTS`` (scripts/test.sh sets it; CI keeps the folder).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from smartcolab.runtime.ui import page_url
from support.runtime_proc import RuntimeProc, start_runtime
from support.ui_helpers import artifacts_dir, wait_for

# What tqdm writes to stderr: "\r" + the redrawn bar, a newline when it closes.
TQDM_JOB = """import sys, time
def bar(i, n=50):
    filled = i * 20 // n
    return f"\\r{i * 100 // n:3d}%|{'#' * filled}{' ' * (20 - filled)}| {i}/{n} [00:0{i // 10}<00:00, 9.9it/s]"
print("training starts", flush=True)
for i in range(51):
    sys.stderr.write(bar(i)); sys.stderr.flush()
    time.sleep(0.01)
sys.stderr.write("\\n"); sys.stderr.flush()
print("training done")
"""
# Stops at 40 % and waits there, so the progress indicator can be read while it runs.
HALFWAY_JOB = """import sys, time
for i in range(5):
    sys.stderr.write(f"\\r{i * 10:3d}%|{'#' * i}| {i}/10"); sys.stderr.flush()
time.sleep(600)
"""
LONG_CLIENT = "claude-desktop via smartcolab-bridge/0.9 on a-rather-long-hostname.example"
LONG_CODE = ("result = 'with_a_really_long_function_name(argument_one=1, "
             "argument_two=[x for x in range(100)], argument_three=a long string value)'\n")


@pytest.fixture(scope="module")
def ui_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    proc = start_runtime(Path(tmp_path_factory.mktemp("ui-layout")))
    try:
        yield proc
    finally:
        proc.stop()


def js(driver: Any, script: str) -> Any:
    return driver.execute_script(script)


def rect(driver: Any, css: str) -> dict[str, float]:
    found: dict[str, float] = js(driver, f"""
        const r = document.querySelector("{css}").getBoundingClientRect();
        return {{left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                 width: r.width, height: r.height}};""")
    return found


def text_of(driver: Any, css: str) -> str:
    return str(js(driver, f'const e = document.querySelector("{css}"); return e ? e.textContent : "";'))


def submit(runtime: RuntimeProc, job_id: str, code: str, *, client: str = "ui-test",
           session: str = "main", wait: bool = False) -> dict[str, Any]:
    if session != "main":
        made = httpx2.post(f"{runtime.url}/sessions", headers=runtime.headers, timeout=60,
                           json={"name": session})
        assert made.status_code in (200, 201, 409), made.text
    r = httpx2.post(f"{runtime.url}/jobs", headers=runtime.headers, timeout=30,
                    json={"job_id": job_id, "code": code, "timeout": 900, "client": client,
                          "session": session})
    assert r.status_code in (200, 201, 202), r.text
    if not wait:
        return dict(r.json())
    for _ in range(20):
        view = httpx2.get(f"{runtime.url}/jobs/{job_id}", headers=runtime.headers, timeout=60,
                          params={"wait": 25}).json()
        if view["status"] not in ("queued", "running"):
            return dict(view)
    raise AssertionError(f"{job_id} did not finish")


def cancel(runtime: RuntimeProc, job_id: str) -> None:
    httpx2.post(f"{runtime.url}/jobs/{job_id}/cancel", headers=runtime.headers, timeout=30)


def open_signed_in(driver: Any, runtime: RuntimeProc, width: int, height: int) -> None:
    driver.set_window_size(width, height)
    driver.get(page_url(runtime.url, runtime.secret))
    wait_for(driver, lambda d: js(d, "return !document.getElementById('app').hidden"), "the monitor")


def select_job(driver: Any, job_id: str) -> None:
    row = f"#jobs tbody tr[data-job-id='{job_id}']"
    wait_for(driver, lambda d: js(d, f'return !!document.querySelector("{row}")'), f"{job_id} listed")
    js(driver, f'document.querySelector("{row}").click()')
    wait_for(driver, lambda d: text_of(d, "#detail-title") == job_id and text_of(d, "#code")
             and text_of(d, "#detail-status"), f"{job_id} in the detail panel")


def shot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = artifacts_dir(tmp_path) / f"ui-{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 5_000
    return path


@pytest.fixture(scope="module")
def finished_jobs(ui_runtime: RuntimeProc) -> dict[str, dict[str, Any]]:
    """Jobs that make a wide list: a long client label, long code, a failure, a tqdm bar."""
    return {
        "layout-long-client-and-code": submit(ui_runtime, "layout-long-client-and-code",
                                              LONG_CODE,
                                              client=LONG_CLIENT, wait=True),
        "layout-fails": submit(ui_runtime, "layout-fails", "print('before')\n1/0\n", wait=True),
        "layout-tqdm": submit(ui_runtime, "layout-tqdm", TQDM_JOB, session="train", wait=True),
    }


@pytest.mark.parametrize("size", [(1280, 800), (1400, 900)], ids=["1280x800", "1400x900"])
def test_job_table_and_detail_panel_do_not_overlap(ui_runtime: RuntimeProc, browser: Any,
                                                   finished_jobs: dict[str, Any], tmp_path: Path,
                                                   size: tuple[int, int]) -> None:
    open_signed_in(browser, ui_runtime, *size)
    select_job(browser, "layout-long-client-and-code")
    shot(browser, tmp_path, f"layout-{size[0]}x{size[1]}")  # kept even when an assertion fails
    inner = js(browser, "return window.innerWidth")
    assert inner >= size[0] - 20, f"the window is {inner} px wide inside, asked for {size[0]}"
    jobs, detail = rect(browser, "#jobs-panel"), rect(browser, "#detail")
    assert jobs["right"] <= detail["left"], (jobs, detail)
    # Every visible cell of the table ends inside its panel (none runs under the detail).
    overflow = js(browser, """
        const panel = document.getElementById('jobs-panel').getBoundingClientRect();
        return [...document.querySelectorAll('#jobs th, #jobs td')]
          .filter(c => c.offsetParent !== null)
          .map(c => c.getBoundingClientRect())
          .filter(r => r.right > panel.right + 0.5).length;""")
    assert overflow == 0
    wrap = js(browser, "const w = document.querySelector('#jobs-panel .table-wrap');"
                       "return [w.scrollWidth, w.clientWidth];")
    assert wrap[0] <= wrap[1] + 1, f"the job table needs a horizontal scroll: {wrap}"
    assert js(browser, "return document.documentElement.scrollWidth") <= inner
    # The list shows a code preview and a dated start time.
    row = "#jobs tbody tr[data-job-id='layout-long-client-and-code']"
    assert "result = 'with_a_really_long_function_name" in text_of(browser, f"{row} .preview")
    assert "ago" in text_of(browser, f"{row} .when") or "just now" in text_of(browser, f"{row} .when")
    assert js(browser, f"return /\\d{{4}}-\\d\\d-\\d\\d \\d\\d:\\d\\d/.test("
                       f"document.querySelector(\"{row} .abs\").textContent)")


def test_sign_in_view_hides_the_application(ui_runtime: RuntimeProc, browser: Any,
                                            tmp_path: Path) -> None:
    browser.set_window_size(1280, 800)
    browser.get(f"{ui_runtime.url}/ui")
    wait_for(browser, lambda d: js(d, "return !document.getElementById('login').hidden"), "the sign-in form")
    assert js(browser, "return getComputedStyle(document.getElementById('app')).display") == "none"
    assert js(browser, "return document.getElementById('app').getBoundingClientRect().height") == 0
    visible = str(js(browser, "return document.body.innerText"))
    assert "No jobs yet" not in visible and "Resources" not in visible and "Sessions" not in visible
    assert "Runtime secret" in visible
    shot(browser, tmp_path, "sign-in")


def test_progress_bar_output_shows_its_latest_frame_once(ui_runtime: RuntimeProc, browser: Any,
                                                         finished_jobs: dict[str, Any],
                                                         tmp_path: Path) -> None:
    view = finished_jobs["layout-tqdm"]
    assert view["status"] == "succeeded", view
    open_signed_in(browser, ui_runtime, 1400, 900)
    select_job(browser, "layout-tqdm")
    wait_for(browser, lambda d: "training done" in text_of(d, "#output"), "the tqdm job's output")
    shot(browser, tmp_path, "tqdm")
    lines = [line for line in text_of(browser, "#output").splitlines() if line]
    bars = [line for line in lines if "%|" in line]
    assert bars == ["100%|####################| 50/50 [00:05<00:00, 9.9it/s]"], lines
    assert lines == ["training starts", bars[0], "training done"], lines
    assert js(browser, "return document.getElementById('progress').hidden") is True


def test_traceback_is_shown_once(ui_runtime: RuntimeProc, browser: Any,
                                 finished_jobs: dict[str, Any]) -> None:
    assert finished_jobs["layout-fails"]["status"] == "failed"
    open_signed_in(browser, ui_runtime, 1400, 900)
    select_job(browser, "layout-fails")
    wait_for(browser, lambda d: not js(d, "return document.getElementById('error').hidden"),
             "the error line")
    detail = str(js(browser, "return document.getElementById('detail').innerText"))
    assert detail.count("Traceback") == 1 and detail.count("----> 2 1/0") == 1, detail
    assert text_of(browser, "#error") == "ZeroDivisionError: division by zero"


def test_running_job_shows_progress_and_filters_narrow_the_list(
        ui_runtime: RuntimeProc, browser: Any, finished_jobs: dict[str, Any], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    submit(ui_runtime, "layout-halfway", HALFWAY_JOB, session="halfway")
    try:
        open_signed_in(browser, ui_runtime, 1280, 800)
        select_job(browser, "layout-halfway")
        wait_for(browser, lambda d: "40 %" in text_of(d, "#progress-text"), "40 % in the progress line")
        assert js(browser, "return document.getElementById('progress').hidden") is False
        width = js(browser, "return document.getElementById('progress-bar').style.width")
        assert width == "40%"
        assert js(browser, "return getComputedStyle(document.querySelector("
                           "\"#jobs tr[data-job-id='layout-halfway'] .badge\"), '::before')"
                           ".animationName") == "spin"
        shot(browser, tmp_path, "running")

        def listed() -> list[str]:
            return list(js(browser, "return [...document.querySelectorAll('#jobs tbody tr')]"
                                    ".map(r => r.dataset.jobId)"))

        assert {"layout-halfway", "layout-fails", "layout-tqdm"} <= set(listed())
        Select(browser.find_element(By.ID, "filter-status")).select_by_value("failed")
        assert listed() == ["layout-fails"]
        Select(browser.find_element(By.ID, "filter-status")).select_by_value("active")
        assert listed() == ["layout-halfway"]
        Select(browser.find_element(By.ID, "filter-status")).select_by_value("")
        wait_for(browser, lambda d: "train" in text_of(d, "#filter-session"), "the session choices")
        Select(browser.find_element(By.ID, "filter-session")).select_by_value("train")
        assert listed() == ["layout-tqdm"]
        Select(browser.find_element(By.ID, "filter-session")).select_by_value("")
        browser.find_element(By.ID, "filter-text").send_keys("really_long_function")
        assert listed() == ["layout-long-client-and-code"]
        assert "1 of" in text_of(browser, "#jobs-count")
        browser.find_element(By.ID, "filter-text").send_keys("-nothing-has-this")
        assert listed() == [] and "No job matches" in text_of(browser, "#jobs-empty")
    finally:
        cancel(ui_runtime, "layout-halfway")


def test_rows_survive_a_refresh(ui_runtime: RuntimeProc, browser: Any,
                                finished_jobs: dict[str, Any]) -> None:
    """A poll refills the rows in place: a found row or a half-done two-click restart
    still refers to what is on screen after the next refresh."""
    open_signed_in(browser, ui_runtime, 1280, 800)
    row = "#sessions tr[data-session='main']"
    wait_for(browser, lambda d: js(d, f'return !!document.querySelector("{row} .restart") && '
                                      "!!document.querySelector(\"#jobs tr[data-job-id='layout-tqdm']\")"),
             "the sessions and the jobs")
    js(browser, f"""window.fcRestart = document.querySelector("{row} .restart");
                   window.fcBadge = document.querySelector("{row} .badge");
                   window.fcJobRow = document.querySelector("#jobs tr[data-job-id='layout-tqdm']");
                   window.fcJobBadge = window.fcJobRow.querySelector(".badge");""")
    wait_for(browser, lambda d: js(d, f'return document.querySelector("{row} .badge") !== window.fcBadge'),
             "a sessions refresh")
    assert js(browser, f'return document.querySelector("{row} .restart") === window.fcRestart')
    wait_for(browser, lambda d: js(d, "return window.fcJobRow.querySelector('.badge') !== "
                                      "window.fcJobBadge"), "a job list refresh")
    assert js(browser, "return document.querySelector(\"#jobs tr[data-job-id='layout-tqdm']\") "
                       "=== window.fcJobRow")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_width_and_colour_scheme(ui_runtime: RuntimeProc, browser: Any,
                                       finished_jobs: dict[str, Any], tmp_path: Path,
                                       scheme: str) -> None:
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": scheme}]})
    # A phone's viewport: 390 CSS pixels wide.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    browser.get(page_url(ui_runtime.url, ui_runtime.secret))
    wait_for(browser, lambda d: js(d, "return !document.getElementById('app').hidden"), "the monitor")
    select_job(browser, "layout-tqdm")
    assert js(browser, "return window.innerWidth") == 390
    assert js(browser, "return document.documentElement.scrollWidth") <= 390
    jobs, detail = rect(browser, "#jobs-panel"), rect(browser, "#detail")
    assert jobs["bottom"] <= detail["top"], "on a phone the detail panel goes below the list"
    background = js(browser, "return getComputedStyle(document.body).backgroundColor")
    channels = [int(v) for v in background[background.index("(") + 1:-1].split(",")[:3]]
    assert (sum(channels) < 150) == (scheme == "dark"), background
    shot(browser, tmp_path, f"phone-{scheme}")
