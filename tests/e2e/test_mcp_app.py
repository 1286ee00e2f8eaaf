"""The job monitor as an MCP App (extension ``io.modelcontextprotocol/ui``).

* the server advertises the extension, lists and serves the ``ui://`` resource, and
  ``run_code_long``/``get_job`` link to it, through the official Python client;
* the resource is one self-contained document (no CDN), with the pinned upstream
  app side inlined as it was published;
* its terminal renderer (assets/terminal.js) agrees with shared/output/terminal.py;
* rendered in headless Chromium inside a host page built on ext-apps' real
  ``app-bridge``, talking to a real ``smartcolab mcp --transport http`` bridge, it
  shows a running job's output growing, and its Cancel button cancels the job.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from mcp import Client
from smartcolab.mcp.app import MONITOR_URI, monitor_html
from smartcolab.mcp.app.monitor import VENDORED_BUNDLE, bundle_as_script
from smartcolab.mcp.server import build_server
from smartcolab.shared.output.terminal import render
from support.bridge_helpers import make_config, text_of
from support.mcp_app_host import NODE_MODULES, REPO, app_host, bundle_host_page, start_http_bridge
from support.runtime_proc import RuntimeProc
from support.ui_helpers import artifacts_dir, wait_for

APP_DIR = REPO / "src" / "smartcolab" / "mcp" / "app"


# ---------------------------------------------------------------- the server side
@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28 discover; 2025-11-25 initialize
async def test_the_monitor_is_advertised_listed_readable_and_linked(
        runtime: RuntimeProc, tmp_path: Path, mode: Any) -> None:
    async with Client(build_server(make_config(tmp_path, runtime)), mode=mode) as client:
        caps = client.server_capabilities
        assert caps is not None and caps.extensions is not None
        assert EXTENSION_ID in caps.extensions
        listed = {r.uri: r for r in (await client.list_resources()).resources}
        assert listed[MONITOR_URI].mime_type == APP_MIME_TYPE
        contents = (await client.read_resource(MONITOR_URI)).contents
        assert len(contents) == 1 and contents[0].mime_type == APP_MIME_TYPE
        html = getattr(contents[0], "text", "")
        assert html.startswith("<!DOCTYPE html>") and html == monitor_html()
        tools = {t.name: t for t in (await client.list_tools()).tools}
        linked = {name for name, t in tools.items()
                  if (t.meta or {}).get("ui", {}).get("resourceUri") == MONITOR_URI}
        assert linked == {"run_code_long", "get_job"}
        # A client without apps still gets the text; the structured content names the job.
        result = await client.call_tool("run_code_long", {
            "code": "print('background job')", "background": True, "session": "mcpapp"})
        assert not result.is_error, text_of(result)
        job_id = (result.structured_content or {}).get("job_id")
        assert isinstance(job_id, str) and f"job {job_id}" in text_of(result)
        done = await client.call_tool("get_job", {"job_id": job_id, "wait": 30})
        assert (done.structured_content or {}).get("job_id") == job_id
        assert "background job" in text_of(done)


def test_the_resource_is_self_contained() -> None:
    html = monitor_html()
    # No script, style or frame comes from anywhere: a host's default CSP allows inline only.
    assert not re.search(r"<(script|img|iframe|link)\b[^>]*\s(src|href)\s*=", html, re.I)
    outside_scripts = re.sub(r"<script\b.*?</script>", "", html, flags=re.S | re.I)
    assert not re.search(r"@import|url\(|https?://", outside_scripts)
    order = re.findall(r'<script type="module" data-src="([^"]+)">', html)
    assert order == [VENDORED_BUNDLE, "terminal.js", "monitor.js"]
    assert "globalThis.McpExtApps={" in html and "export{" not in html[-200_000:]


def test_bundle_as_script_turns_the_final_export_into_a_global() -> None:
    assert bundle_as_script("var a=1,b=2;export{a as App,b};", "G") == \
        "var a=1,b=2;globalThis.G={App:a,b:b};\n"
    for bad in ("var a=1;", "import x from'y';var a=1;export{a as A};",
                "var a=1;export{a as A};export{a as B};", "var a=1;export{a as A-B};",
                "var a=1;export default a;"):
        with pytest.raises(ValueError):
            bundle_as_script(bad)


def test_the_vendored_app_side_is_the_pinned_package_file() -> None:
    pinned = json.loads((REPO / "package.json").read_text())["dependencies"]
    package = NODE_MODULES / "@modelcontextprotocol" / "ext-apps"
    if not package.is_dir():
        pytest.skip("node_modules lacks @modelcontextprotocol/ext-apps: run `npm ci`")
    installed = json.loads((package / "package.json").read_text())["version"]
    assert pinned["@modelcontextprotocol/ext-apps"] == installed
    assert f"**{installed}**" in (APP_DIR / "vendor" / "README.md").read_text()
    assert (APP_DIR / "vendor" / VENDORED_BUNDLE).read_bytes() == \
        (package / "dist" / "src" / "app-with-deps.js").read_bytes()


# ---------------------------------------------------------------- terminal rules
PIECES = ["a", "b", "xyz", " ", "  ", "é", "日本", "🙂", "\n", "\r", "\r\n", "\b", "\x1b[",
          "\x1b]0;title\x07", "\x1b=", "\x1b7", "\x1b", "[", ";", "?", "0", "1", "2", "3", "12",
          "A", "B", "C", "D", "E", "F", "G", "K", "m", "J", "1K", "2K", "0K", "\x1b[K",
          "\x1b[2K", "\x1b[1K", "\x1b[A", "\x1b[2A", "\x1b[3D", "\x1b[5G", "\x1b[32m", "\x1b[0m",
          "\x1b[?25l", "\x1b[1;2H", "100%|####|", "\x1b[F", "\x1b[2E", "\x1b[4C"]
FIXED = ["", "plain  \n", "a\rb", "abc\rX", "10%\r20%\r30%\n", "ab\b\bX", "\x1b[31mred\x1b[0m",
         "line1\nline2\x1b[1A\rUP\n", "x\x1b[5Cy", "abc\x1b[2D\x1b[K", "abcdef\x1b[3G\x1b[1K",
         "a\r\nb", "\r\r\n\n", "trail   \r", "🙂🙂\b\bA", "\x1b]2;t\x1b\\ok"]


def test_terminal_js_renders_like_terminal_py(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    rng = random.Random(19)
    cases = FIXED + ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 40)))
                     for _ in range(1500)]
    runner = tmp_path / "run.js"
    runner.write_text(
        (APP_DIR / "assets" / "terminal.js").read_text()
        + "\nconst cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        + "process.stdout.write(JSON.stringify(cases.map(globalThis.SmartColabTerminal.render)));\n")
    done = subprocess.run([node, str(runner)], input=json.dumps(cases), capture_output=True,
                          text=True, timeout=120, check=True)
    got = json.loads(done.stdout)
    wrong = [(c, g, render(c)) for c, g in zip(cases, got, strict=True) if g != render(c)]
    assert not wrong, f"{len(wrong)} differ, e.g. (input, js, python): {wrong[:3]}"


# ---------------------------------------------------------------- in a browser
# Each step redraws one line three times (only the last frame should show) and
# prints a coloured line (the colour codes should not show).
CODE = """\
import sys, time
for i in range(1200):
    sys.stdout.write("\\r".join(f"step {i}.{k}" for k in range(3)) + "\\n")
    print(f"\\x1b[32mtick {i}\\x1b[0m", flush=True)
    time.sleep(0.1)
"""

# About 700 kB of output, then a redrawn line.
LONG_LOG = """\
for i in range(7000):
    print(f"line {i:05d} " + "x" * 90)
print("loading 10%\\rloading 100%")
"""


def _text(driver: Any, element_id: str) -> str:
    value: str = driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';",
        element_id)
    return value


def _last_tick(output: str) -> int:
    return max((int(n) for n in re.findall(r"^tick (\d+)$", output, re.M)), default=-1)


def _render_in_host(browser: Any, url: str) -> dict[str, Any]:
    """Load the host page; the tool result it passed to the view."""
    browser.switch_to.default_content()
    browser.get(url)
    wait_for(browser, lambda d: d.execute_script(
        "return document.body && (document.body.dataset.ready || document.body.dataset.error)"),
        "the host page to call the tool and render its app")
    error = browser.execute_script("return document.body.dataset.error")
    assert error is None, error
    result: dict[str, Any] = browser.execute_script("return window.toolResult")
    browser.switch_to.frame(browser.find_element("id", "app"))
    return result


@pytest.mark.slow
def test_the_app_follows_a_running_job_and_cancels_it(browser: Any, fresh_runtime: RuntimeProc,
                                                       tmp_path: Path) -> None:
    page = bundle_host_page(tmp_path)
    scenario = {"tool": "run_code_long", "arguments": {"code": CODE, "session": "monitor"}}
    with start_http_bridge(tmp_path, fresh_runtime, "--wait-budget", "2") as bridge, \
            app_host(bridge, page, scenario) as host:
        result = _render_in_host(browser, host.url)
        job_id = result["structuredContent"]["job_id"]
        assert result["structuredContent"]["status"] in ("queued", "running")
        assert _text(browser, "job") == f"job {job_id}"

        wait_for(browser, lambda d: _last_tick(_text(d, "output")) >= 3, "output up to tick 3")
        first = _text(browser, "output")
        wait_for(browser, lambda d: _last_tick(_text(d, "output")) >= _last_tick(first) + 5,
                 "the output to grow")
        grown = _text(browser, "output")
        browser.save_screenshot(str(artifacts_dir(tmp_path) / "mcp-app-running.png"))
        assert len(grown) > len(first) and grown.startswith(first.rsplit("\n", 2)[0])
        # Terminal-faithful: the last frame of each redrawn line, no colour codes.
        assert "step 2.2\ntick 2\n" in grown and "step 2.0" not in grown
        assert "\x1b" not in grown and "[32m" not in grown
        assert _text(browser, "status") == "running"
        wait_for(browser, lambda d: re.fullmatch(r"(\d+:)?\d\d:\d\d", _text(d, "elapsed")),
                 "the elapsed time")
        wait_for(browser, lambda d: re.fullmatch(r"[\d.]+ / [\d.]+ GB \(\d+%\)", _text(d, "ram")),
                 "RAM figures")
        assert re.fullmatch(r"(load [\d.]+ on )?\d+ cores", _text(browser, "cpu"))
        assert _text(browser, "gpu") not in ("", "-")

        browser.find_element("id", "cancel").click()
        wait_for(browser, lambda d: _text(d, "status") == "cancelled", "the job to be cancelled")
        assert browser.find_element("id", "cancel").get_attribute("disabled") is not None
        browser.save_screenshot(str(artifacts_dir(tmp_path) / "mcp-app-cancelled.png"))
        jobs = host.call("tools/call", {"name": "list_jobs",
                                        "arguments": {"session": "monitor"}})
        assert [j["status"] for j in jobs["structuredContent"]["jobs"]
                if j["job_id"] == job_id] == ["cancelled"]

        browser.switch_to.default_content()
        called = browser.execute_script("return window.appCalls")
        assert {"get_job_output", "list_jobs", "probe_colab_environment",
                "cancel_job"} <= set(called)
        assert "get_job" not in called  # the model's get_job cursor is left alone

        # get_job on a finished job with a long log (over the 512 kB the view keeps):
        # the same monitor shows its end state, the end of the log, and says so.
        done = host.call("tools/call", {"name": "run_code_quick", "arguments": {
            "code": LONG_LOG, "session": "monitor"}})
        finished = done["structuredContent"]["job_id"]
        host.scenario = {"tool": "get_job", "arguments": {"job_id": finished, "wait": 0}}
        _render_in_host(browser, host.url)
        wait_for(browser, lambda d: _text(d, "status") == "succeeded", "the finished job's status")
        wait_for(browser, lambda d: _text(d, "output").endswith(
            f"line 06999 {'x' * 90}\nloading 100%\n"), "the end of its log")
        tail = _text(browser, "output")
        assert tail.startswith("[earlier output omitted") and "line 00000" not in tail
        assert "loading 10%" not in tail and len(tail) < 600_000
        assert browser.find_element("id", "cancel").get_attribute("disabled") is not None

    console = [e["message"] for e in browser.get_log("browser")]
    assert not [m for m in console if "Content Security Policy" in m or "Refused to" in m]
