"""The notebook helper and the notebook itself, executed with nbclient.

``google.colab`` and ``kaggle_secrets`` do not exist here: tiny stand-ins are
injected (a dict behind ``userdata.get``, a ``drive.mount`` that makes a folder).
"""

from __future__ import annotations

import io
import json
import re
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from smartcolab.client.http.client import RuntimeClient
from smartcolab.runtime import notebook
from smartcolab.shared.protocol import TERMINAL_STATUSES, JobSubmit
from support.hosted_helpers import FakeNgrok, install_fake_ngrok

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "colab" / "smart_colab_executor.ipynb"

pytestmark = pytest.mark.anyio


class SecretNotFoundError(Exception):
    pass


def colab_stub(monkeypatch: pytest.MonkeyPatch, secrets: dict[str, str],
               mounted: list[str] | None = None) -> None:
    def get(name: str) -> str:
        if name not in secrets:
            raise SecretNotFoundError(name)
        return secrets[name]

    def mount(path: str) -> None:
        Path(path, "MyDrive").mkdir(parents=True, exist_ok=True)
        if mounted is not None:
            mounted.append(path)

    colab = types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=get)  # type: ignore[attr-defined]
    colab.drive = types.SimpleNamespace(mount=mount)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google.colab", colab)


@pytest.fixture(autouse=True)
def _no_leftover_runtime() -> Iterator[None]:
    yield
    notebook.stop()


def test_read_secret_prefers_colab_then_kaggle_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A_SECRET", "from-env")
    monkeypatch.setenv("B_SECRET", "from-env")
    monkeypatch.setenv("C_SECRET", "from-env")
    colab_stub(monkeypatch, {"A_SECRET": "from-colab"})
    kaggle = types.ModuleType("kaggle_secrets")
    values = {"A_SECRET": "from-kaggle", "B_SECRET": "from-kaggle"}
    kaggle.UserSecretsClient = lambda: types.SimpleNamespace(  # type: ignore[attr-defined]
        get_secret=lambda name: values[name])
    monkeypatch.setitem(sys.modules, "kaggle_secrets", kaggle)
    assert notebook.read_secret("A_SECRET") == "from-colab"
    assert notebook.read_secret("B_SECRET") == "from-kaggle"
    assert notebook.read_secret("C_SECRET") == "from-env"
    assert notebook.read_secret("NOWHERE_SECRET") is None


def test_mount_drive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="only be mounted in Colab"):
        notebook.mount_drive(tmp_path / "drive")
    mounted: list[str] = []
    colab_stub(monkeypatch, {}, mounted)
    target = notebook.mount_drive(tmp_path / "drive")
    assert mounted == [str(tmp_path / "drive")]
    assert target == tmp_path / "drive" / "MyDrive" / "smartcolab" and target.is_dir()


async def test_start_with_ngrok_reads_colab_secrets_and_stop_closes_all(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake: FakeNgrok = install_fake_ngrok(monkeypatch)
    colab_stub(monkeypatch, {"NGROK_AUTHTOKEN": "tok-colab", "NGROK_DOMAIN": "fixed.ngrok.app",
                             "SMARTCOLAB_SECRET": "fixed-secret-from-colab-0123"})
    out = io.StringIO()
    rt = notebook.start(tunnel="ngrok", root=tmp_path, drive=True,
                        drive_mountpoint=tmp_path / "drive", out=out, start_main_session=False)
    assert fake.connects[0]["token"] == "tok-colab"
    assert rt.url == "https://fixed.ngrok.app" and rt.secret == "fixed-secret-from-colab-0123"
    printed = out.getvalue()
    assert "connect_runtime " + json.dumps({"name": "colab", "url": rt.url,
                                            "secret_name": "colab"}) in printed
    assert f".venv/bin/smartcolab runtimes add colab {rt.url} --ask-secret --replace" in printed
    assert ".venv/bin/smartcolab config claude-desktop --runtime colab" in printed
    assert f'"secret": "{rt.secret}"' not in printed
    assert '"command": "python"' not in printed and "pip install smart-colab-mcp" not in printed
    assert rt.handle.config.persist_root == tmp_path / "drive" / "MyDrive" / "smartcolab"
    assert f"saved variables go to: {rt.handle.config.persist_root}" in printed
    local = rt.handle.url
    async with RuntimeClient(local, rt.secret) as client:
        assert (await client.health()).status == "ok"
    notebook.stop()
    assert not rt.running and fake.kills == 1
    with pytest.raises(httpx2.TransportError):
        httpx2.get(f"{local}/health", timeout=2)


def test_start_twice_stops_the_first(tmp_path: Path) -> None:
    first = notebook.start(tunnel="none", root=tmp_path, quiet=True, start_main_session=False)
    second = notebook.start(tunnel="none", root=tmp_path, quiet=True, start_main_session=False)
    assert not first.running and second.running and first.secret != second.secret


def _write_colab_stub_package(directory: Path, secret: str) -> None:
    package = directory / "google" / "colab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "userdata.py").write_text(textwrap.dedent(f"""
        class SecretNotFoundError(Exception):
            pass

        def get(name):
            if name == "SMARTCOLAB_SECRET":
                return {secret!r}
            raise SecretNotFoundError(name)
    """))


@pytest.mark.slow
async def test_the_notebook_runs_end_to_end(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    secret = "notebook-secret-from-colab-stub-42"
    stubs = tmp_path / "stubs"
    _write_colab_stub_package(stubs, secret)
    work = tmp_path / "content"
    work.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(stubs))
    monkeypatch.setenv("SMARTCOLAB_LOCAL_CHECKOUT", str(REPO))
    monkeypatch.setenv("SMARTCOLAB_TUNNEL", "none")
    monkeypatch.setenv("SMARTCOLAB_STOP_AT_END", "1")
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-test")
    monkeypatch.setenv("SMARTCOLAB_ROOT", str(work))
    # Imported here, not at collection: nbformat's jsonschema builds a grammar at import
    # (about 4 s of CPU), paid by every pytest-xdist worker that collects this module.
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}})
    with client.setup_kernel():
        for index in code_cells[:-1]:
            client.execute_cell(nb.cells[index], index)
        serve_cell = next(i for i in code_cells if "notebook.start(" in nb.cells[i].source)
        printed = "".join(o.get("text", "") for o in nb.cells[serve_cell].outputs)
        match = re.search(r"URL:\s+(\S+)", printed)
        assert match is not None, printed
        url = match.group(1)
        assert f"secret: {secret}" in printed
        async with RuntimeClient(url, secret) as rc:
            probe = await rc.probe()
            assert probe.platform == "colab" and probe.disk_root == str(work)
            with anyio.fail_after(60):
                view = await rc.submit(JobSubmit(job_id="nb-job-1", code="import os\n"
                                                 "print(6 * 7, os.getcwd())"), wait=30)
                while view.status not in TERMINAL_STATUSES:
                    view = await rc.get_job(view.job_id, wait=30)
            assert view.status == "succeeded" and view.result is not None
            assert view.result.stdout.text.strip() == f"42 {work}"
        # The monitor cell shows the /ui page (an iframe outside Colab), and the serve
        # cell's logs are readable lines, not JSON.
        monitor = next(i for i in code_cells if "show_monitor()" in nb.cells[i].source)
        shown = json.dumps([o.get("data", {}) for o in nb.cells[monitor].outputs])
        assert "/ui" in shown and "iframe" in shown.lower(), shown
        assert '{"ts":' not in printed
        last = code_cells[-1]
        client.execute_cell(nb.cells[last], last)
        assert "runtime stopped" in "".join(o.get("text", "") for o in nb.cells[last].outputs)
    with pytest.raises(httpx2.TransportError):
        httpx2.get(f"{url}/health", timeout=2)
