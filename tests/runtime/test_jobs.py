"""The job API against a real runtime server and real Jupyter kernels."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time

import anyio
import httpx2
import pytest

from smartcolab.client.http.client import RuntimeClient
from smartcolab.shared.errors import JobIdConflict, JobNotFound
from smartcolab.shared.protocol import JobSubmit
from support.jobs_helpers import Api
from support.runtime_proc import RuntimeProc


def test_state_persists_between_jobs(api: Api) -> None:
    first = api.submit("counter = 41")
    assert first["status"] == "succeeded"
    second = api.submit("counter += 1\nprint(counter)\ncounter * 2")
    assert second["status"] == "succeeded"
    assert second["output"] == "42\n84\n"
    result = second["result"]
    assert result["stdout"]["text"] == "42\n"
    assert result["outputs"][0]["type"] == "execute_result"
    assert result["outputs"][0]["text"] == "84"
    assert result["execution_count"] == first["result"]["execution_count"] + 1
    assert result["resources"]["ram_total_bytes"] > 0


def test_print_before_exception_is_kept(api: Api) -> None:
    view = api.submit("print('before the error')\nraise ValueError('bad value')")
    assert view["status"] == "failed"
    assert view["result"]["stdout"]["text"] == "before the error\n"
    err = view["result"]["error"]
    assert err["ename"] == "ValueError" and err["evalue"] == "bad value"
    assert "\x1b[" not in "".join(err["traceback"])
    assert view["output"].startswith("before the error\n") and "ValueError" in view["output"]


@pytest.mark.parametrize("code,ename", [("raise SystemExit(3)", "SystemExit"),
                                        ("raise KeyboardInterrupt", "KeyboardInterrupt"),
                                        ("import sys; sys.exit('bye')", "SystemExit")])
def test_exits_and_interrupts_in_user_code_fail_the_job(api: Api, code: str, ename: str) -> None:
    view = api.submit(code)
    assert view["status"] == "failed"
    assert view["result"]["error"]["ename"] == ename
    assert not view["result"]["state_lost"]
    assert api.submit("1 + 1")["output"] == "2\n"


def test_class_defined_in_a_job_pickles(api: Api) -> None:
    view = api.submit("import pickle\nclass Point:\n    def __init__(self, x): self.x = x\n"
                      "print(__name__, pickle.loads(pickle.dumps(Point(7))).x)")
    assert view["status"] == "succeeded", view
    assert view["output"] == "__main__ 7\n"


def test_magics_and_shell_escapes(api: Api) -> None:
    view = api.submit("%pip --version", timeout=60)
    assert view["status"] == "succeeded" and "pip " in view["output"]
    view = api.submit("!echo hello-from-shell")
    assert view["status"] == "succeeded" and "hello-from-shell" in view["output"]


def test_secret_is_not_in_the_kernel_environment(api: Api, rt: RuntimeProc) -> None:
    view = api.submit("import os\nprint(sorted(k for k, v in os.environ.items() "
                      f"if v == {rt.secret!r} or k == 'SMARTCOLAB_SECRET'))")
    assert view["output"] == "[]\n"


def test_same_job_id_runs_once(api: Api) -> None:
    api.submit("runs = []")
    first = api.submit_raw("runs.append(1)", job_id="once-only")
    again = api.submit_raw("runs.append(1)", job_id="once-only")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["status"] == "succeeded"
    assert api.submit("len(runs)")["output"] == "1\n"
    conflict = api.submit_raw("something else", job_id="once-only")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "job_id_conflict"


def test_a_used_job_id_is_answered_whatever_a_new_job_would_meet(api: Api) -> None:
    """A stored job id is found by the insert's constraint, or after a refusal: a resubmit
    gets the job (200), never the refusal a new job meets, nor a second run."""
    api.submit("done = 'yes'", job_id="stored-once")
    blocker = api.submit_raw("import time; time.sleep(2)", job_id="blocker", wait=0)
    assert blocker.status_code == 201
    busy = api.submit_raw("1", if_idle=True, wait=0)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "session_busy"
    again = api.submit_raw("done = 'yes'", job_id="stored-once", if_idle=True, wait=0)
    assert again.status_code == 200 and again.json()["status"] == "succeeded"
    live = api.submit_raw("import time; time.sleep(2)", job_id="blocker", if_idle=True, wait=0)
    assert live.status_code == 200 and live.json()["status"] in ("queued", "running")
    other = api.submit_raw("done = 'no'", job_id="stored-once", if_idle=True, wait=0)
    assert other.status_code == 409 and other.json()["error"]["code"] == "job_id_conflict"
    assert api.wait_done("blocker")["status"] == "succeeded"
    assert api.submit("print(done)")["output"] == "yes\n"


def test_png_outputs_come_back_as_png(api: Api) -> None:
    view = api.submit("import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
                      "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()", timeout=60)
    assert view["status"] == "succeeded", view
    images = [o for o in view["result"]["outputs"] if o["image_base64"]]
    assert len(images) == 1
    assert base64.b64decode(images[0]["image_base64"]).startswith(b"\x89PNG")


def test_html_only_output_is_reduced_to_text(api: Api) -> None:
    view = api.submit("from IPython.display import HTML, display\n"
                      "display({'text/html': '<table><tr><td>a1</td><td>b1</td></tr></table>'}, raw=True)")
    assert view["status"] == "succeeded", view
    assert view["result"]["outputs"][0]["text"] == "| a1 | b1 |\n|---|---|"


@pytest.mark.timing
def test_long_poll_returns_new_output_after_the_cursor(api: Api) -> None:
    view = api.submit("import time\nprint('one', flush=True)\ntime.sleep(1.5)\nprint('two')",
                      wait=0)
    assert view["status"] in ("queued", "running")
    first = api.get(view["job_id"], wait=10, since=0)
    assert first["output"] == "one\n" and first["status"] == "running"
    t0 = time.monotonic()
    second = api.get(view["job_id"], wait=30, since=first["cursor"])
    assert time.monotonic() - t0 < 20  # new output ended the poll, not its 30 s wait
    assert second["output"] == "two\n" or second["status"] == "running"
    done = api.wait_done(view["job_id"])
    assert done["status"] == "succeeded"
    assert api.get(view["job_id"], since=first["cursor"])["output"] == "two\n"


@pytest.mark.timing
def test_cancel_queued_and_running_jobs(api: Api) -> None:
    running = api.submit("import time\nkept = 'yes'\ntime.sleep(30)", wait=0)
    queued = api.submit("never_set = 1", wait=0)
    deadline = time.monotonic() + 10
    while api.get(running["job_id"])["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = api.http.post(f"/jobs/{queued['job_id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    t0 = time.monotonic()
    r = api.http.post(f"/jobs/{running['job_id']}/cancel")
    assert r.json()["status"] == "cancelled"
    assert time.monotonic() - t0 < 15  # interrupted, not left to its 30 s sleep
    assert not r.json()["result"]["state_lost"]
    assert api.submit("print(kept, 'never_set' in globals())")["output"] == "yes False\n"
    again = api.http.post(f"/jobs/{queued['job_id']}/cancel")
    assert again.json()["status"] == "cancelled"


def test_list_jobs_recent_first_with_filters(api: Api) -> None:
    a = api.submit("1")
    b = api.submit("raise RuntimeError('x')")
    listed = api.http.get("/jobs", params={"limit": 2}).json()["jobs"]
    assert [j["job_id"] for j in listed] == [b["job_id"], a["job_id"]]
    failed = api.http.get("/jobs", params={"status": "failed", "limit": 100}).json()["jobs"]
    assert b["job_id"] in {j["job_id"] for j in failed}
    assert all(j["status"] == "failed" for j in failed)


@pytest.mark.parametrize("body,where", [
    ({"code": "1"}, "job_id"),
    ({"job_id": "x", "code": ""}, "code"),
    ({"job_id": "bad id!", "code": "1"}, "job_id"),
    ({"job_id": "x", "code": "1", "timeout": -1}, "timeout"),
    ({"job_id": "x", "code": "1", "session": "../etc"}, "session"),
    ({"job_id": "x", "code": "1", "surprise": True}, "surprise"),
])
def test_malformed_bodies_are_422_with_a_clear_message(api: Api, body: dict[str, object],
                                                        where: str) -> None:
    r = api.http.post("/jobs", json=body)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_input" and where in err["message"]


def test_non_json_body_and_unknown_job(api: Api) -> None:
    r = api.http.post("/jobs", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
    r = api.http.get("/jobs/no-such-job")
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    r = api.submit_raw("1", session="nosuch")
    assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found"


def test_output_paging_is_exact_for_multibyte_text(api: Api) -> None:
    view = api.submit("print('héllo ☃ wörld ' * 3000)")
    assert view["status"] == "succeeded"
    expected = ("héllo ☃ wörld " * 3000 + "\n").encode()
    assert view["output_bytes"] == len(expected)
    got, offset = b"", 0
    while True:
        page = api.http.get(f"/jobs/{view['job_id']}/output",
                            params={"offset": offset, "limit": 1000}).json()
        got += page["text"].encode()
        assert page["next_offset"] > offset or page["complete"]
        offset = page["next_offset"]
        if page["complete"]:
            break
    assert got == expected
    r = api.http.get(f"/jobs/{view['job_id']}/output", params={"offset": len(expected) + 1})
    assert r.status_code == 416


def test_response_text_is_capped_head_and_tail(api: Api) -> None:
    view = api.submit("print('HEAD'); print('x' * 200_000); print('TAIL')")
    assert view["output_truncated"] and view["output"].startswith("HEAD")
    assert view["output"].rstrip().endswith("TAIL") and "bytes omitted" in view["output"]
    assert len(view["output"].encode()) < 70 * 1024
    stdout = view["result"]["stdout"]
    assert stdout["truncated"] and stdout["total_chars"] == 200_011
    assert stdout["text"].startswith("HEAD") and stdout["text"].rstrip().endswith("TAIL")


pytest_plugins = ["support.jobs_fixtures"]  # the module-scoped rt and api fixtures
pytestmark = pytest.mark.anyio


async def test_concurrent_jobs_on_one_session_run_one_at_a_time(rt: RuntimeProc) -> None:
    code = ("import time\nprint('start {n}', flush=True)\ntime.sleep(0.02)\n"
            "print('end {n}', flush=True)")
    async with RuntimeClient(rt.url, rt.secret) as client:
        jobs = [JobSubmit(job_id=f"conc-{n}-{time.time_ns()}", code=code.format(n=n))
                for n in range(20)]
        with anyio.fail_after(60):
            views = await asyncio.gather(*(client.submit(j, wait=50) for j in jobs))
            views = [await client.get_job(v.job_id, wait=50) if v.status != "succeeded" else v
                     for v in views]
    for n, view in enumerate(views):
        assert view.status == "succeeded"
        assert view.output == f"start {n}\nend {n}\n"
    spans = sorted((v.started_at or 0, v.finished_at or 0) for v in views)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, "two jobs of one session overlapped"


async def test_signed_client_round_trip(rt: RuntimeProc) -> None:
    async with RuntimeClient(rt.url, rt.secret) as client:
        job = JobSubmit(job_id=f"signed-{time.time_ns()}", code="print('via client')")
        view = await client.submit(job, wait=30)
        assert view.status == "succeeded" and view.output == "via client\n"
        assert (await client.submit(job, wait=1)).job_id == job.job_id
        page = await client.job_output(job.job_id)
        assert page.text == "via client\n" and page.complete
        listed = await client.list_jobs(limit=5)
        assert listed.jobs[0].job_id == job.job_id
        assert client.last_epoch == (await client.health()).epoch
        with pytest.raises(JobIdConflict):
            await client.submit(JobSubmit(job_id=job.job_id, code="2"), wait=0)
        with pytest.raises(JobNotFound):
            await client.get_job("missing-job")


def test_health_stays_public(rt: RuntimeProc) -> None:
    assert httpx2.get(f"{rt.url}/jobs").status_code == 401
