"""The colab kind against a fake Colab (tests/support/fake_colab.py) in front of a real
Jupyter Server, through the pinned official package (google-colab-cli) in a Python 3.12
environment.  Nothing here reaches Google: every address is 127.0.0.1.

The 3.12 environment: ``$SMARTCOLAB_COLAB_PYTHON``, else ``.venv-colab/bin/python`` in the
repository (``scripts/colab-venv.sh`` makes it); without one these tests skip and say so.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from smartcolab.client.colab.backend import ColabBackend
from smartcolab.client.colab.official import OFFICIAL_VERSION
from smartcolab.client.colab.service import ColabService, ColabSettings, find_python
from smartcolab.shared.errors import Conflict, Forbidden, StateLost, Unauthorized, Unsupported
from smartcolab.shared.protocol import JobSubmit
from support.fake_colab import FakeColab, serve_fake_colab
from support.jupyter_helpers import start_jupyter

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[2]


def _colab_python() -> str | None:
    candidate = os.environ.get("SMARTCOLAB_COLAB_PYTHON") or str(REPO / ".venv-colab/bin/python")
    if not Path(candidate).exists():
        return None
    probe = subprocess.run([candidate, "-c", "import importlib.metadata as m, colab_cli; "
                            "print(m.version('google-colab-cli'))"],
                           capture_output=True, text=True, timeout=120)
    return candidate if probe.stdout.strip() == OFFICIAL_VERSION else None


PY312 = _colab_python()
needs_package = pytest.mark.skipif(
    PY312 is None, reason=f"no Python 3.12+ with google-colab-cli=={OFFICIAL_VERSION}: run "
    "scripts/colab-venv.sh (needs pyenv's or the system's python3.12 and the package index), "
    "or set SMARTCOLAB_COLAB_PYTHON")


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeColab]:
    if PY312 is None:
        pytest.skip("no Python 3.12 environment with google-colab-cli")
    root = tmp_path_factory.mktemp("colab-jupyter") / "root"
    with start_jupyter(root) as jp, serve_fake_colab(jp.url, jp.token) as fk:
        yield fk


@pytest.fixture
def settings(fake: FakeColab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ColabSettings:
    # The fake's token endpoint is plain http on loopback; oauthlib refuses that otherwise.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    fake.assignments.clear()
    fake.proxy_ttl_s, fake.max_assignments, fake.denied = 3600, 4, set()
    client = tmp_path / "oauth-client.json"
    client.write_text(json.dumps(fake.client_config()))
    return ColabSettings(domain=fake.url, accelerator="T4", state_dir=tmp_path / "state",
                         python=PY312, client_config=str(client))


async def _signed_in(settings: ColabSettings) -> ColabService:
    service = ColabService(settings)
    await service.signin(code="good-code")
    return service


def test_an_old_python_without_the_package_gets_a_clear_message() -> None:
    settings = ColabSettings(python=None)
    if sys.version_info >= (3, 12):
        pytest.skip("this interpreter is new enough; the message is for older ones")
    with pytest.raises(Unsupported) as err:
        find_python(settings, environ={})
    assert "3.12" in str(err.value) and "google-colab-cli==0.7.5" in str(err.value)
    assert find_python(settings, environ={"SMARTCOLAB_COLAB_PYTHON": "/x/python"}) == "/x/python"


@needs_package
async def test_sign_in_stores_tokens_0600_and_refreshes_them(fake: FakeColab,
                                                              settings: ColabSettings) -> None:
    service = ColabService(settings)
    with pytest.raises(Unauthorized, match="sign in first"):
        await service.list()  # nothing stored yet: it must not prompt from the bridge
    with pytest.raises(Exception):  # noqa: B017 - a wrong code is refused by the token endpoint
        await service.signin(code="wrong-code")
    await service.signin(code="good-code")
    mode = stat.S_IMODE(settings.token_path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert stat.S_IMODE(settings.state_dir.stat().st_mode) == 0o700
    assert json.loads(settings.token_path.read_text())["token_uri"] == f"{fake.url}/token"
    fake.expire_access_tokens()
    before = fake.calls.count("token:refresh_token")
    assert await service.list() == []
    assert fake.calls.count("token:refresh_token") > before  # renewed, then accepted
    assert stat.S_IMODE(settings.token_path.stat().st_mode) == 0o600


@needs_package
async def test_assign_list_unassign_through_the_official_package(fake: FakeColab,
                                                                 settings: ColabSettings) -> None:
    service = await _signed_in(settings)
    got = await service.assign("T4")
    assert got["url"] == fake.proxy_url and got["expires_in"] == 3600
    listed = await service.list()
    assert [(a["endpoint"], a["accelerator"]) for a in listed] == [(got["endpoint"], "T4")]
    assert listed[0]["token"] != got["token"]  # each listing hands out a fresh proxy token
    fake.denied = {"H100"}
    with pytest.raises(Forbidden, match="entitlement"):
        await service.assign("H100")
    fake.max_assignments = 1
    with pytest.raises(Conflict, match="release one"):
        await service.assign("L4")
    await service.unassign(got["endpoint"])
    assert await service.list() == []
    assert any(c.startswith("POST unassign/") for c in fake.calls)


async def _run(backend: ColabBackend, code: str) -> str:
    with anyio.fail_after(120):
        view = await backend.submit(JobSubmit(job_id=uuid.uuid4().hex, code=code), wait=60)
    assert view.status == "succeeded", view
    return view.result.stdout.text if view.result else ""


@pytest.mark.slow
@needs_package
async def test_backend_runs_code_through_the_proxy_renews_its_token_and_is_found_again(
        fake: FakeColab, settings: ColabSettings) -> None:
    await _signed_in(settings)
    fake.proxy_ttl_s = 6
    settings = replace(settings, refresh_margin_s=4)  # renewed once 2 s old
    backend = ColabBackend("gpu", settings)
    try:
        assert "42" in await _run(backend, "x = 21 * 2\nprint(x)")
        first = backend.lease.token if backend.lease else ""
        await anyio.sleep(6.5)  # the first token has expired at the proxy now
        await backend.health()  # REST: refused with the old token
        assert "42" in await _run(backend, "print(x)")
        assert backend.lease is not None and backend.lease.token != first
    finally:
        await backend.aclose()
    seen = fake.proxied
    assert {p["kind"] for p in seen} == {"http", "ws"}
    assert all(p["query"] and p["header"] and p["authuser"] == "0" for p in seen)
    # A new bridge finds the same runtime (no second assignment) and its variables.
    again = ColabBackend("gpu", settings)
    try:
        assert "42" in await _run(again, "print(x)")
        assert len(fake.assignments) == 1
        probe = await again.probe()
        assert any("Colab runtime" in n for n in probe.notes)
        assert probe.session_time_left_s is not None and probe.session_time_left_s > 11 * 3600
    finally:
        await again.aclose()


@needs_package
async def test_a_vanished_runtime_is_state_lost_then_replaced(fake: FakeColab,
                                                             settings: ColabSettings) -> None:
    await _signed_in(settings)
    backend = ColabBackend("gpu", settings)
    try:
        await _run(backend, "y = 1")
        assert backend.lease is not None
        old = backend.lease.endpoint
        fake.vanish(old)
        with pytest.raises(StateLost, match=r"STATE LOST.*no longer lists it"):
            await backend.submit(JobSubmit(job_id=uuid.uuid4().hex, code="print(y)"), wait=30)
        assert ColabService(settings).load("gpu") is None
        out = await _run(backend, "print('fresh')")  # the next call assigns a new runtime
        assert "fresh" in out and backend.lease is not None and backend.lease.endpoint != old
    finally:
        await backend.aclose()


@needs_package
async def test_a_recycled_runtime_is_state_lost(fake: FakeColab, settings: ColabSettings) -> None:
    await _signed_in(settings)
    backend = ColabBackend("gpu", settings)
    try:
        await _run(backend, "z = 3")
        fake.recycle()
        with pytest.raises(StateLost, match="kernels are gone"):
            await backend.submit(JobSubmit(job_id=uuid.uuid4().hex, code="print(z)"), wait=60)
        assert "NameError" not in await _run(backend, "print('again')")
    finally:
        await backend.aclose()


@needs_package
async def test_kept_alive_while_used_then_released_when_idle(
        fake: FakeColab, settings: ColabSettings, tmp_path: Path) -> None:
    await _signed_in(settings)
    settings = replace(settings, keepalive_s=0.5, idle_release_s=8.0)
    backend = ColabBackend("gpu", settings)
    release = tmp_path / "release"
    try:
        # A running job keeps it alive: the job runs until the fake has seen a keep-alive
        # (each is a process of the official package: seconds on a loaded machine).
        job = await backend.submit(JobSubmit(job_id=uuid.uuid4().hex, code=(
            f"import os, time\nwhile not os.path.exists({str(release)!r}):\n"
            "    time.sleep(0.05)")), wait=0)
        assert backend.lease is not None
        endpoint = backend.lease.endpoint
        for _ in range(600):  # the fake is polled: it has no event to wait on
            if fake.keepalives.get(endpoint, 0) >= 1:
                break
            await anyio.sleep(0.2)
        assert fake.keepalives.get(endpoint, 0) >= 1
        release.touch()
        with anyio.fail_after(120):
            view = await backend.get_job(job.job_id, wait=60)
        assert view.status == "succeeded", view
        for _ in range(120):  # the fake is polled: it has no event to wait on
            if endpoint not in fake.assignments:
                break
            await anyio.sleep(0.5)
        assert endpoint not in fake.assignments
        with pytest.raises(StateLost, match="released after"):
            await backend.health()
    finally:
        await backend.aclose()


@needs_package
async def test_cli_add_assigns_and_release_gives_it_back(fake: FakeColab, settings: ColabSettings,
                                                         tmp_path: Path) -> None:
    from smartcolab.cli.commands import runtimes as cli_runtimes
    from smartcolab.client.registry import load_runtimes_file

    await _signed_in(settings)  # the sign-in itself is the test above; here: no prompt
    path = tmp_path / "runtimes.toml"
    options: dict[str, object] = {"url": fake.url, "state_dir": str(settings.state_dir),
                                  "oauth_client": settings.client_config, "python": PY312}
    life = await cli_runtimes.add_colab(path, "gpu", accelerator="l4", options=options,
                                        description="", make_default=True, replace=False)
    assert "Colab runtime" in life and "L4" in life and "12 h" in life
    (spec,), default = load_runtimes_file(path, {})
    assert default == "gpu" and spec.kind == "colab" and spec.options["accelerator"] == "L4"
    (endpoint,) = fake.assignments
    assert fake.assignments[endpoint].accelerator == "L4"
    assert ColabService(settings).load("gpu") is not None  # held across processes
    assert await cli_runtimes.release(path, "gpu") is True
    assert fake.assignments == {} and ColabService(settings).load("gpu") is None
    assert await cli_runtimes.release(path, "gpu") is False
