"""The runtime's caps: RAM floor (503 low_memory unless forced), sessions, queued jobs, images.

Real servers started with the CLI flags that set each cap.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from support.jobs_helpers import Api, runtime_with_grace
from support.runtime_proc import RuntimeProc


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    rt = runtime_with_grace(tmp_path_factory.mktemp("caps") / "root",
                            "--max-queued", "2", "--max-sessions", "2")
    yield rt
    rt.stop()


@pytest.fixture
def api(capped: RuntimeProc) -> Iterator[Api]:
    client = Api(capped)
    yield client
    client.close()


def test_a_submit_below_the_ram_floor_is_refused_unless_forced(tmp_path: Path) -> None:
    floor_mb = psutil.virtual_memory().total // 2**20 * 4  # far above what is available
    rt = runtime_with_grace(tmp_path / "root", "--min-free-ram-mb", str(floor_mb))
    client = Api(rt)
    try:
        refused = client.submit_raw("1+1")
        assert refused.status_code == 503
        body = refused.json()
        assert body["error"]["code"] == "low_memory"
        assert "force=true" in body["error"]["message"]
        assert body["error"]["details"]["ram_available_bytes"] > 0
        # Nothing was recorded for the refused id: the same id can be forced afterwards.
        job_id = f"forced-{secrets.token_hex(4)}"
        assert client.submit_raw("1+1", job_id=job_id).status_code == 503
        assert client.http.get(f"/jobs/{job_id}").status_code == 404
        forced = client.submit("1+1", job_id=job_id, force=True)
        assert forced["status"] == "succeeded"
        assert forced["result"]["outputs"][0]["text"] == "2"
    finally:
        client.close()
        rt.stop()


def test_the_session_cap_refuses_one_more_session(api: Api) -> None:
    created = api.http.post("/sessions", json={"name": "extra"})
    assert created.status_code == 201, created.text
    try:
        refused = api.http.post("/sessions", json={"name": "onetoomany"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        assert refused.json()["error"]["details"]["max_sessions"] == 2
        names = {s["name"] for s in api.http.get("/sessions").json()["sessions"]}
        assert names == {"main", "extra"}
    finally:
        assert api.http.delete("/sessions/extra").status_code == 204
    # The freed slot can be used again.
    again = api.http.post("/sessions", json={"name": "again"})
    assert again.status_code == 201
    assert api.http.delete("/sessions/again").status_code == 204


def test_the_queue_cap_refuses_a_third_waiting_job_with_429(api: Api) -> None:
    running = api.submit("import time\ntime.sleep(30)", wait=0)
    assert api.get(running["job_id"])["status"] in ("queued", "running")
    queued = [api.submit(f"{k}", wait=0) for k in range(2)]
    try:
        assert all(q["status"] == "queued" for q in queued)
        refused = api.submit_raw("3", wait=0)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "queue_full"
        assert "Retry-After" in refused.headers
        # Another session has its own queue.
        other = api.http.post("/sessions", json={"name": "side"})
        assert other.status_code == 201
        side = api.submit("40 + 2", session="side")
        assert side["status"] == "succeeded"
    finally:
        for q in queued:
            api.http.post(f"/jobs/{q['job_id']}/cancel")
        api.http.post(f"/jobs/{running['job_id']}/cancel")
        api.http.delete("/sessions/side")
    assert api.get(running["job_id"])["status"] == "cancelled"
    # With the queue drained, submits are accepted again.
    assert api.submit("1")["status"] == "succeeded"


_PNG = ("import base64, zlib, struct\n"
        "from IPython.display import display, Image\n"
        "def png(extra):\n"
        "    def chunk(t, d):\n"
        "        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))\n"
        "    ihdr = struct.pack('>IIBBBBB', 1, 1, 8, 0, 0, 0, 0)\n"
        "    body = chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\\x00\\x00'))\n"
        "    return (b'\\x89PNG\\r\\n\\x1a\\n' + body + chunk(b'tEXt', b'c\\x00' + extra)\n"
        "            + chunk(b'IEND', b''))\n")


def test_images_per_result_are_capped_at_eight_and_the_rest_are_named(api: Api) -> None:
    view = api.submit(_PNG + "for k in range(10):\n    display(Image(data=png(b'x')))")
    assert view["status"] == "succeeded"
    images = [o for o in view["result"]["outputs"] if o.get("image_base64")]
    assert len(images) == 8
    message = view["result"]["message"] or ""
    assert "image 9 not returned: at most 8 images per result" in message
    assert "image 10 not returned" in message


def test_an_image_over_the_size_cap_is_not_returned(api: Api) -> None:
    view = api.submit(_PNG + "import os\n"
                      "display(Image(data=png(os.urandom(6 * 2**20).hex().encode()[:6 * 2**20])))\n"
                      "display(Image(data=png(b'small')))")
    assert view["status"] == "succeeded"
    outputs = view["result"]["outputs"]
    big = [o for o in outputs if (o.get("image_bytes") or 0) > 5 * 2**20]
    small = [o for o in outputs if o.get("image_base64")]
    assert len(big) == 1 and big[0].get("image_base64") is None
    assert len(small) == 1
    assert "over the 5242880-byte limit: not returned" in (view["result"]["message"] or "")
