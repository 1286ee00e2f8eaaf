"""Sessions, variables and cleanup against a real runtime server and real kernels."""

from __future__ import annotations

import time

import anyio
import pytest

from smartcolab.client.http.client import RuntimeClient
from smartcolab.shared.errors import SessionBusy
from smartcolab.shared.protocol import CleanupRequest, JobSubmit
from support.jobs_helpers import Api
from support.runtime_proc import RuntimeProc


def test_create_list_delete_sessions(api: Api) -> None:
    r = api.http.post("/sessions", json={"name": "side"})
    assert r.status_code == 201 and r.json()["status"] == "idle"
    assert r.json()["kernel_pid"]
    assert api.http.post("/sessions", json={"name": "side"}).json()["error"]["code"] == "session_exists"
    names = {s["name"] for s in api.http.get("/sessions").json()["sessions"]}
    assert {"main", "side"} <= names
    api.submit("where = 'side'", session="side")
    assert api.submit("print('where' in globals())")["output"] == "False\n"
    epoch = api.http.get("/health").json()["epoch"]
    assert api.http.delete("/sessions/side").status_code == 204
    assert api.http.get("/health").json()["epoch"] != epoch
    assert api.submit_raw("1", session="side").status_code == 404
    r = api.http.delete("/sessions/main")
    assert r.status_code == 403 and "restart" in r.json()["error"]["message"]
    assert api.http.post("/sessions", json={"name": "no/slash"}).status_code == 422


def test_sessions_run_in_parallel(api: Api) -> None:
    api.http.post("/sessions", json={"name": "par"})
    try:
        a = api.submit("import time; time.sleep(1)", wait=0)
        b = api.submit("import time; time.sleep(1)", session="par", wait=0)
        a, b = api.wait_done(a["job_id"]), api.wait_done(b["job_id"])
        assert a["status"] == b["status"] == "succeeded"
        assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
    finally:
        api.http.delete("/sessions/par")


def test_restart_loses_state_and_changes_epochs(api: Api) -> None:
    api.submit("doomed = 1")
    before = api.http.get("/sessions").json()["sessions"]
    main_before = next(s for s in before if s["name"] == "main")
    runtime_epoch = api.http.get("/health").json()["epoch"]
    r = api.http.post("/sessions/main/restart")
    assert r.status_code == 200
    assert r.json()["epoch"] != main_before["epoch"]
    assert r.headers["X-SC-Epoch"] != runtime_epoch
    view = api.submit("print('doomed' in globals())")
    assert view["output"] == "False\n" and view["epoch"] == r.json()["epoch"]


def test_restart_stops_a_running_job(api: Api) -> None:
    running = api.submit("import time; time.sleep(30)", wait=0)
    time.sleep(0.3)
    api.http.post("/sessions/main/restart")
    view = api.wait_done(running["job_id"], 10)
    assert view["status"] == "cancelled" and view["result"]["state_lost"]
    assert "restarted" in view["result"]["message"]


def test_interrupt_cancels_only_the_running_job(api: Api) -> None:
    api.submit("kept_var = 5")
    running = api.submit("import time; time.sleep(30)", wait=0)
    queued = api.submit("print(kept_var)", wait=0)
    deadline = time.monotonic() + 10
    while api.get(running["job_id"])["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = api.http.post("/sessions/main/interrupt")
    assert r.status_code == 200
    assert api.wait_done(running["job_id"], 10)["status"] == "cancelled"
    assert api.wait_done(queued["job_id"], 10)["output"] == "5\n"


NAMES = "print(sorted(k for k in globals() if not k.startswith('_i')))"


def test_variables_are_described_without_leaving_names(api: Api) -> None:
    api.submit("import numpy as np\nimport os\narr = np.zeros((3, 4), dtype='float32')\n"
               "words = ['a', 'b']\n_hidden = 1\ndef helper(): pass")
    before = api.submit(NAMES)["output"]
    found = {v["name"]: v for v in api.http.get("/sessions/main/variables").json()["variables"]}
    assert found["arr"]["shape"] == [3, 4] and found["arr"]["dtype"] == "float32"
    assert found["arr"]["size_bytes"] == 48
    assert found["words"]["length"] == 2 and found["words"]["preview"] == "['a', 'b']"
    assert found["helper"]["type"] == "function"
    assert "np" not in found and "os" not in found and "_hidden" not in found
    assert "In" not in found and "get_ipython" not in found
    private = {v["name"] for v in api.http.get("/sessions/main/variables",
                                               params={"private": "true"}).json()["variables"]}
    assert {"np", "_hidden"} <= private
    assert api.submit(NAMES)["output"] == before


def test_cleanup_deletes_only_what_is_asked_and_never_files(api: Api, rt: RuntimeProc) -> None:
    (rt.root / "keep.log").write_text("precious")
    api.submit("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
               "plt.figure()\nbig = bytearray(50_000_000)\nsmall = 1\nkeep_me = 2")
    report = api.http.post("/sessions/main/cleanup", json={}).json()
    assert report["deleted"] == [] and report["closed_figures"] == 1
    assert report["collected_objects"] >= 0 and report["rss_before"] > 0
    report = api.http.post("/sessions/main/cleanup", json={"names": ["big", "nope"]}).json()
    assert report["deleted"] == ["big"]
    assert any("nope" in n for n in report["notes"])
    assert report["freed_bytes"] > 40_000_000
    assert api.submit("print('big' in globals(), small, keep_me)")["output"] == "False 1 2\n"
    report = api.http.post("/sessions/main/cleanup", json={"reset": True}).json()
    assert {"small", "keep_me"} <= set(report["deleted"])
    assert api.submit("print('small' in globals())")["output"] == "False\n"
    assert (rt.root / "keep.log").read_text() == "precious"


pytest_plugins = ["support.jobs_fixtures"]  # the module-scoped rt and api fixtures
pytestmark = pytest.mark.anyio


async def test_variables_and_cleanup_refused_while_busy(rt: RuntimeProc) -> None:
    async with RuntimeClient(rt.url, rt.secret) as client:
        job = JobSubmit(job_id=f"busy-{time.time_ns()}", code="import time; time.sleep(1.5)")
        await client.submit(job)
        with anyio.fail_after(20):
            while (await client.get_job(job.job_id)).status != "running":  # noqa: ASYNC110
                await anyio.sleep(0.05)
            with pytest.raises(SessionBusy) as err:
                await client.variables("main")
            assert job.job_id in err.value.message and "retry" in err.value.message
            with pytest.raises(SessionBusy):
                await client.cleanup("main", CleanupRequest())
            done = await client.get_job(job.job_id, wait=20)
            assert done.status == "succeeded"
            listed = await client.variables("main")
            assert listed.session == "main"
            sessions = await client.sessions()
            assert any(s.name == "main" for s in sessions.sessions)
