"""The local runtime daemon with real processes: bridges die and come back, jobs and state stay.

Every test stops the daemons it started (``stop_daemons_under`` in ``finally``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp import Client
from support.bridge_helpers import text_of
from support.daemons import alive, bridge_params, daemon_pids, stop_daemons_under, wait_gone
from support.runtime_proc import PROCESS_TIMEOUT_S

pytestmark = pytest.mark.anyio


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    try:
        yield tmp_path
    finally:
        stop_daemons_under(tmp_path)


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, text_of(result)[:2000]
    data = result.structured_content
    assert isinstance(data, dict)
    return data


async def test_jobs_and_state_survive_a_killed_bridge(tmp: Path) -> None:
    pid_file = tmp / "bridge.pid"
    flag = tmp / "finish-now"
    # Runs until the test says so: the next bridge is sure to find it running.
    long_code = ("import os, time\nfor i in range(8):\n    print('step', i, flush=True)\n"
                 f"while not os.path.exists({str(flag)!r}):\n    time.sleep(0.05)\n"
                 "print('finished')")
    with anyio.fail_after(120):
        with contextlib.suppress(Exception):  # the session dies with the bridge we kill
            async with Client(bridge_params(tmp, pid_file=pid_file)) as first:
                defined = await first.call_tool("run_code_quick", {"code": "x = 41"})
                assert structured(defined)["status"] == "succeeded"
                started = await first.call_tool("run_code_long",
                                                {"code": long_code, "background": True})
                job_id = structured(started)["job_id"]
                slow = await first.call_tool("run_code_long", {
                    "code": "import time; time.sleep(300)", "background": True,
                    "session": "other"})
                slow_id = structured(slow)["job_id"]
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                await first.call_tool("get_job", {"job_id": job_id, "wait": 0})
        assert not alive(int(pid_file.read_text()))
        [daemon] = daemon_pids(tmp)
        assert alive(daemon), "the daemon must outlive the bridge"

        async with Client(bridge_params(tmp)) as second:
            seen = await second.call_tool("get_job", {"job_id": job_id, "wait": 0})
            assert structured(seen)["status"] == "running"
            await anyio.Path(flag).touch()
            done = await second.call_tool("get_job", {"job_id": job_id, "wait": 30})
            assert structured(done)["status"] == "succeeded"
            # Each get_job shows only output this client was not shown yet: together they
            # hold every line, and "finished" came after the first look.
            shown = text_of(seen) + text_of(done)
            assert all(f"step {i}" in shown for i in range(8)), shown
            assert "finished" in text_of(done)
            page = structured(await second.call_tool("get_job_output", {"job_id": job_id}))
            assert page["complete"] and page["total_bytes"] == len(
                "".join(f"step {i}\n" for i in range(8)) + "finished\n")
            cancelled = await second.call_tool("cancel_job", {"job_id": slow_id})
            assert structured(cancelled)["status"] == "cancelled"
            kept = await second.call_tool("run_code_quick", {"code": "print(x + 1)"})
            assert "42" in text_of(kept) and "STATE LOST" not in text_of(kept) + text_of(done)

            stop_daemons_under(tmp)
            assert wait_gone(daemon, 20)
            lost = await second.call_tool("run_code_quick", {"code": "print('fresh')"})
            again = await second.call_tool("run_code_quick", {"code": "print('fresh again')"})
    assert "fresh" in text_of(lost) and text_of(lost).count("STATE LOST") == 1, text_of(lost)
    assert "STATE LOST" not in text_of(again)
    [new_daemon] = daemon_pids(tmp)
    assert new_daemon != daemon


async def test_two_bridges_at_once_share_one_daemon_with_their_own_sessions(tmp: Path) -> None:
    views: dict[str, list[dict[str, Any]]] = {}

    async def bridge(name: str) -> None:
        async with Client(bridge_params(tmp)) as client:
            await client.call_tool("run_code_quick", {"code": f"who = {name!r}"})
            results: list[dict[str, Any]] = []

            async def one(i: int) -> None:
                # Fifty at once on one session: run_code_long queues them (a quick call
                # on a busy session is refused at once), then each is followed to its end.
                r = await client.call_tool("run_code_long",
                                           {"code": f"print(who, {i} * {i})", "background": True})
                data, shown = structured(r), text_of(r)
                while data["status"] in ("queued", "running"):
                    r = await client.call_tool("get_job", {"job_id": data["job_id"], "wait": 30})
                    data, shown = structured(r), shown + text_of(r)
                assert f"{name} {i * i}" in shown, shown
                assert "STATE LOST" not in shown
                results.append(data)

            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(one, i)
            everyone = structured(await client.call_tool("list_jobs", {"limit": 200}))
            assert not [j for j in everyone["jobs"] if j["status"] == "lost"]
            # "main" is this bridge's own session: its 51 jobs, all done.
            own = structured(await client.call_tool("list_jobs", {"limit": 200,
                                                                  "session": "main"}))
            assert len(own["jobs"]) == 51
            assert all(j["status"] == "succeeded" for j in own["jobs"]), own
            # Each job says which client submitted it: this bridge's lease.
            assert {j["client"].split("/")[-1] for j in own["jobs"]} == {own["jobs"][0]["session"]}
            views[name] = results

    with anyio.fail_after(300):
        async with anyio.create_task_group() as tg:
            tg.start_soon(bridge, "alpha")
            tg.start_soon(bridge, "beta")
    assert len(daemon_pids(tmp)) == 1
    assert len(views["alpha"]) == len(views["beta"]) == 50
    sessions = {name: {v["session"] for v in vs} for name, vs in views.items()}
    assert sessions["alpha"] != sessions["beta"] and all(len(s) == 1 for s in sessions.values())
    assert all(v["status"] == "succeeded" for vs in views.values() for v in vs)


async def test_idle_daemon_stops_itself_and_the_next_call_says_state_lost(tmp: Path) -> None:
    with anyio.fail_after(180):
        async with Client(bridge_params(tmp, SMARTCOLAB_IDLE_MINUTES="0.05")) as client:
            await client.call_tool("run_code_quick", {"code": "y = 7"})
            [daemon] = daemon_pids(tmp)
            assert await anyio.to_thread.run_sync(wait_gone, daemon, 90), "idle daemon kept running"
            assert not daemon_pids(tmp), "the runtime file goes with the daemon"
            after = await client.call_tool("run_code_quick", {"code": "print('y' in globals())"})
    assert "False" in text_of(after) and text_of(after).count("STATE LOST") == 1, text_of(after)
    assert daemon_pids(tmp) and daemon_pids(tmp) != [daemon]


def make_venv(path: Path, *, with_ipykernel: bool) -> Path:
    """A second virtualenv; with_ipykernel links this one's packages in through a .pth."""
    import subprocess
    import sys
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    purelib = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S).stdout.strip())
    if with_ipykernel:
        (purelib / "bridge_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (purelib / "only_in_second_venv.py").write_text("VALUE = 'from the second venv'\n")
    return python


async def test_kernels_run_the_chosen_python_and_refuse_one_without_ipykernel(tmp: Path) -> None:
    good = make_venv(tmp / "good-venv", with_ipykernel=True)
    bare = make_venv(tmp / "bare-venv", with_ipykernel=False)
    code = "import sys, only_in_second_venv as m\nprint(sys.executable)\nprint(m.VALUE)"
    with anyio.fail_after(180):
        async with Client(bridge_params(tmp, "--python", str(good))) as client:
            ran = await client.call_tool("run_code_quick", {"code": code})
        async with Client(bridge_params(tmp, "--python", str(bare))) as client:
            refused = await client.call_tool("run_code_quick", {"code": "print(1)"})
    assert str(good) in text_of(ran) and "from the second venv" in text_of(ran), text_of(ran)
    assert refused.is_error
    assert f"{bare} -m pip install ipykernel" in text_of(refused), text_of(refused)


async def test_private_modes_and_the_secret_only_in_the_runtime_file(tmp: Path) -> None:
    tokens = {"COLAB_TOKEN": "colab-token-abcdef", "JUPYTER_TOKEN": "jupyter-token-abcdef",
              "SMARTCOLAB_MCP_TOKEN": "mcp-token-abcdef"}
    code = ("import os\nprint(sorted(k for k in os.environ if 'TOKEN' in k "
            "or k.startswith('SMARTCOLAB')))\nprint('done')")
    with anyio.fail_after(120):
        async with Client(bridge_params(tmp, **tokens)) as client:
            ran = await client.call_tool("run_code_quick", {"code": code})
            await client.call_tool("list_jobs", {})
            [daemon] = daemon_pids(tmp)
            daemon_env = await anyio.Path(f"/proc/{daemon}/environ").read_bytes()
    assert "[]" in text_of(ran) and "done" in text_of(ran), text_of(ran)
    assert not any(v.encode() in daemon_env for v in tokens.values())
    ckpt = tmp / "ckpt"
    [runtime_file] = ckpt.rglob("runtime.json")
    secret = json.loads(runtime_file.read_text())["secret"].encode()
    modes = {}
    for path in [ckpt, *ckpt.rglob("*")]:
        modes[path] = path.stat().st_mode & 0o777
        if path.is_file() and path != runtime_file:
            assert secret not in path.read_bytes(), f"the secret is in {path}"
    wrong = {str(p): oct(m) for p, m in modes.items() if m != (0o700 if p.is_dir() else 0o600)}
    assert not wrong
    assert any(p.name == "daemon.log" for p in modes) and any(p.suffix == ".sqlite3" for p in modes)


async def test_stale_runtime_files_are_replaced(tmp: Path) -> None:
    from smartcolab.client.local.daemon import DaemonSpec, ensure_daemon, read_info

    spec = DaemonSpec(base=tmp / "local", root=tmp / "ws")
    with anyio.fail_after(120):
        first, started = await ensure_daemon(spec)
        assert started and first.directory == spec.directory
        again, started_again = await ensure_daemon(spec)
        assert (again.pid, started_again) == (first.pid, False)
        os.kill(first.pid, signal.SIGKILL)  # leaves its runtime file behind
        assert await anyio.to_thread.run_sync(wait_gone, first.pid, 30)
        second, started = await ensure_daemon(spec)
        assert started and second.pid != first.pid and second.secret != first.secret
        stop_daemons_under(tmp)
        # A file naming a live process that is no daemon of ours, on a closed port.
        await anyio.Path(spec.directory / "runtime.json").write_text(json.dumps(
            {"url": "http://127.0.0.1:9", "pid": os.getpid(), "secret": "x"}))
        third, started = await ensure_daemon(spec)
    assert started and third.pid not in (first.pid, second.pid, os.getpid())
    info = read_info(spec.directory)
    assert info is not None and info.pid == third.pid


async def test_the_runtime_file_names_the_secret_after_a_rotation(tmp: Path) -> None:
    """A rotated secret reaches the runtime file before the rotation answers, so the next
    bridge or CLI call that reads it is let in (and the old secret is not)."""
    from smartcolab.client.http.client import NO_RETRY, RuntimeClient
    from smartcolab.client.local.daemon import DaemonSpec, ensure_daemon, read_info
    from smartcolab.shared import routes
    from smartcolab.shared.errors import Unauthorized

    spec = DaemonSpec(base=tmp / "local", root=tmp / "ws")
    with anyio.fail_after(120):
        info, _ = await ensure_daemon(spec)
        async with RuntimeClient(info.url, info.secret, retry=NO_RETRY) as old:
            rotated = (await old.request("POST", routes.AUTH_ROTATE)).json()["secret"]
            after = read_info(spec.directory)
            assert after is not None and (after.pid, after.url) == (info.pid, info.url)
            assert after.secret == rotated != info.secret
            with pytest.raises(Unauthorized):
                await old.sessions()
        async with RuntimeClient(after.url, after.secret, retry=NO_RETRY) as new:
            assert (await new.sessions()).sessions == []
        again, started = await ensure_daemon(spec)
    assert (again.pid, again.secret, started) == (info.pid, rotated, False)
    assert oct(os.stat(spec.directory / "runtime.json").st_mode & 0o777) == "0o600"


async def test_clients_reach_the_daemon_through_its_private_unix_socket(tmp: Path) -> None:
    """The daemon also listens on a Unix socket only its user can reach; the runtime file
    names it, the embedded runtime's client uses it, and it goes with the daemon."""
    import stat

    from smartcolab.client.embedded import EmbeddedRuntime
    from smartcolab.client.http.client import NO_RETRY, RuntimeClient
    from smartcolab.shared.protocol import JobSubmit

    embedded = EmbeddedRuntime(tmp / "ws", tmp / "local")
    with anyio.fail_after(120):
        url = await embedded.start()
        info = embedded.info
        assert info is not None and info.socket is not None
        sock = anyio.Path(info.socket)
        mode = (await sock.lstat()).st_mode
        assert stat.S_ISSOCK(mode) and mode & 0o777 == 0o600
        folder = await sock.parent.lstat()
        assert folder.st_uid == os.getuid() and folder.st_mode & 0o777 == 0o700
        client = embedded.client(url, embedded.secret)
        assert client._lane is not None and client._lane.unix_path == info.socket
        async with client:
            await client.create_session("viasock")
            view = await client.submit(JobSubmit(job_id="over-the-socket", code="6*7",
                                                 session="viasock"), wait=30)
        assert view.status == "succeeded" and "42" in view.output
        # Only the socket: the URL's port goes nowhere, the request still gets through.
        async with RuntimeClient("http://127.0.0.1:9", info.secret, uds=info.socket,
                                 retry=NO_RETRY) as socket_only:
            assert (await socket_only.get_job("over-the-socket")).status == "succeeded"
    stop_daemons_under(tmp)
    assert await anyio.to_thread.run_sync(wait_gone, info.pid, 30)
    assert not await sock.exists()


async def test_a_daemon_gone_is_noticed_once_its_last_check_is_old(
        tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each call asks whether the daemon still runs; a check holds ``RECHECK_S``, after
    which a daemon that died is replaced."""
    from smartcolab.client import embedded as embedded_module

    monkeypatch.setattr(embedded_module, "RECHECK_S", 600.0)
    embedded = embedded_module.EmbeddedRuntime(tmp / "ws", tmp / "local")
    with anyio.fail_after(120):
        url = await embedded.start()
        assert embedded.info is not None
        first = embedded.info.pid
        os.kill(first, signal.SIGKILL)
        assert await anyio.to_thread.run_sync(wait_gone, first, 30)
        assert await embedded.start() == url  # the last check still holds
        monkeypatch.setattr(embedded_module, "RECHECK_S", 0.0)
        await embedded.start()
    assert embedded.info.pid != first and alive(embedded.info.pid)
