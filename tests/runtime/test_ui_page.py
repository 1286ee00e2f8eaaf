"""The /ui page's server side: what is public, what is not, the banner line, inline display."""

from __future__ import annotations

import io
import re
import sys
import types
from collections.abc import Iterator
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

import httpx2
import pytest

from smartcolab.runtime.config import RuntimeConfig
from smartcolab.runtime.host.sampler import ResourceSampler
from smartcolab.runtime.server import print_banner
from smartcolab.runtime.ui import page_url
from smartcolab.runtime.ui.display import show_monitor
from smartcolab.shared.protocol import ResourceHistory
from support.runtime_proc import RuntimeProc

UI_DIR = importlib_resources.files("smartcolab.runtime.ui")


def test_page_and_assets_are_public_static_and_locked_down(runtime: RuntimeProc) -> None:
    page = httpx2.get(f"{runtime.url}/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "script-src 'self'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert runtime.secret not in page.text
    for asset in re.findall(r'(?:src|href)="ui/([^"]+)"', page.text):
        r = httpx2.get(f"{runtime.url}/ui/{asset}")
        assert r.status_code == 200 and r.content == UI_DIR.joinpath(asset).read_bytes()
    assert httpx2.get(f"{runtime.url}/ui/", follow_redirects=True).text == page.text


@pytest.mark.parametrize("name", ["__init__.py", "display.py", "..%2Fprotocol.py", ".hidden.js",
                                  "missing.js"])
def test_only_page_assets_are_served(runtime: RuntimeProc, name: str) -> None:
    r = httpx2.get(f"{runtime.url}/ui/{name}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_page_references_nothing_outside_the_runtime() -> None:
    for item in UI_DIR.iterdir():
        if item.name.endswith((".html", ".js", ".css")):
            text = item.read_text()
            external = [u for u in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text)
                        if "www.w3.org/2000/svg" not in u]
            assert external == [], f"{item.name} references {external}"


def test_resources_needs_the_secret_and_returns_history(runtime: RuntimeProc) -> None:
    assert httpx2.get(f"{runtime.url}/resources").status_code == 401
    r = httpx2.get(f"{runtime.url}/resources", headers=runtime.headers)
    assert r.status_code == 200
    history = ResourceHistory.model_validate(r.json())
    assert history.samples, "the sampler takes a first sample at start"
    last = history.samples[-1]
    assert 0 < last.ram_used_bytes < last.ram_total_bytes and 0 <= last.cpu_percent <= 100
    newer = httpx2.get(f"{runtime.url}/resources", params={"since": last.t}, headers=runtime.headers)
    assert all(s["t"] > last.t for s in newer.json()["samples"])
    bad = httpx2.get(f"{runtime.url}/resources", params={"since": -1}, headers=runtime.headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"


def test_sampler_keeps_only_its_window(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = ResourceSampler(interval_s=1.0, window_s=3.0)
    for _ in range(5):
        sampler.sample_now()
    history = sampler.history()
    assert len(history.samples) == 3
    assert [s.t for s in history.samples] == sorted(s.t for s in history.samples)
    assert sampler.history(since=history.samples[-1].t).samples == []


def test_banner_prints_the_page_url_with_the_secret_in_the_fragment() -> None:
    config = RuntimeConfig(secret="a+b/c=d&e")
    out = io.StringIO()
    print_banner("http://127.0.0.1:8765", config, out)
    line = next(x for x in out.getvalue().splitlines() if x.startswith("live job monitor:"))
    assert line.endswith("http://127.0.0.1:8765/ui#secret=a%2Bb%2Fc%3Dd%26e")
    assert "?" not in line
    assert page_url("http://h:1/") == "http://h:1/ui"


@pytest.fixture
def fake_colab(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """google.colab.output cannot exist here: a stub that records what it was asked."""
    calls: list[dict[str, Any]] = []
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    output = types.ModuleType("google.colab.output")

    def serve_kernel_port_as_iframe(port: int, path: str = "/", width: str = "100%",
                                    height: str = "400", cache_in_notebook: bool = False) -> None:
        calls.append({"port": port, "path": path, "width": width, "height": height})

    output.serve_kernel_port_as_iframe = serve_kernel_port_as_iframe  # type: ignore[attr-defined]
    google.colab = colab  # type: ignore[attr-defined]
    colab.output = output  # type: ignore[attr-defined]
    for name, module in (("google", google), ("google.colab", colab),
                         ("google.colab.output", output)):
        monkeypatch.setitem(sys.modules, name, module)
    yield calls


def test_show_monitor_in_colab_frames_the_kernel_port(fake_colab: list[dict[str, Any]]) -> None:
    assert show_monitor(8765, "s3cret", height=600) == "colab"
    assert fake_colab == [{"port": 8765, "path": "/ui#secret=s3cret", "width": "100%",
                           "height": "600"}]


def test_show_monitor_elsewhere_displays_an_iframe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.colab.output", None)  # import fails: not Colab
    shown: list[Any] = []
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    assert show_monitor(4321, None) == "iframe"
    html = shown[0]._repr_html_()
    assert 'src="http://127.0.0.1:4321/ui"' in html
    assert show_monitor(4321, "k") == "iframe" and "/ui#secret=k" in shown[1]._repr_html_()


def test_docs_describe_the_page() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "ui.md").read_text()
    for needle in ("/ui", "#secret=", "/resources", "show_monitor", "sessionStorage"):
        assert needle in doc, f"docs/ui.md does not mention {needle}"


def test_server_handle_shows_its_own_monitor(tmp_path: Path,
                                             fake_colab: list[dict[str, Any]]) -> None:
    import smartcolab

    handle = smartcolab.serve(root=tmp_path, port=0, secret="handle-secret-0123456789", banner=False)
    try:
        assert handle.show_monitor(height=500) == "colab"
        assert fake_colab == [{"port": handle.config.port, "path": "/ui#secret=handle-secret-0123456789",
                               "width": "100%", "height": "500"}]
        page = httpx2.get(f"{handle.url}/ui", timeout=10)
        assert page.status_code == 200
    finally:
        handle.stop()
