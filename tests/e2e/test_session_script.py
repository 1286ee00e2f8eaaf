"""A scripted 25-call data-science session through the real stdio bridge (issue 15).

`python -m smartcolab mcp` as a subprocess, driven by the official MCP client, against a
real runtime: write and load a CSV, statistics, two plots, a loop longer than the
bridge's wait budget followed with get_job, variables, save and download a file (sha256 checked), upload and read a file, a
chunked operation that fails at one index and resumes after the fix, a 5 MB output
paged, and the rest of a session's chores. What it costs a model is measured: all of
its text at most 40,000 characters, no result over 20,000, no call over 55 s without an
answer. The figures are printed (run with -s to see them).

The bridge runs with a wait budget of ``WAIT_BUDGET_S`` instead of the default 50 s, and
the loop is scaled with it (``LOOP_STEPS`` seconds, three budgets): the same
calls, "running" first and then followed, in a third of the time (the loop was 90 s at
the default budget; the default's margin under a client's patience is a unit test,
``test_config.py``).  Marked ``slow``, and ``timing`` for the 55 s bound.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import CallToolResult, ImageContent, TextContent

from mcp import Client
from support.bridge_helpers import stdio_params
from support.runtime_proc import RuntimeProc

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timing]

TOTAL_TEXT_CAP = 40_000
RESULT_CAP = 20_000
ANSWER_WITHIN_S = 55.0
CALLS = 25
WAIT_BUDGET_S = 8.0
LOOP_STEPS = 24  # one second each: three budgets, so get_job follows at least twice


@dataclass
class Tape:
    """Every call of the session: its text size, duration and longest silence."""

    client: Client
    rows: list[tuple[str, int, float, float]] = field(default_factory=list)

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> CallToolResult:
        started = last = time.monotonic()
        silent = 0.0

        async def progress(done: float, total: float | None, message: str | None) -> None:
            nonlocal last, silent
            now = time.monotonic()
            silent, last = max(silent, now - last), now

        with anyio.fail_after(120):
            result = await self.client.call_tool(tool, args or {}, progress_callback=progress)
        now = time.monotonic()
        silent = max(silent, now - last)
        self.rows.append((tool, len(text_of(result)), now - started, silent))
        return result

    def report(self) -> str:
        lines = [f"{i:2d} {tool:<24} {chars:7,} chars {took:6.1f} s (silent {quiet:5.1f} s)"
                 for i, (tool, chars, took, quiet) in enumerate(self.rows, start=1)]
        total = sum(r[1] for r in self.rows)
        largest = max(self.rows, key=lambda r: r[1])
        quietest = max(self.rows, key=lambda r: r[3])
        lines.append(f"session: {len(self.rows)} calls, {total:,} characters of text; largest "
                     f"result {largest[1]:,} ({largest[0]}); longest call "
                     f"{max(r[2] for r in self.rows):.1f} s; longest silent wait "
                     f"{quietest[3]:.1f} s ({quietest[0]})")
        return "\n".join(lines)


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def ok(result: CallToolResult) -> str:
    text = text_of(result)
    assert not result.is_error, text
    return text


WRITE_CSV = """
import csv, os, random
os.makedirs({d!r}, exist_ok=True)
random.seed(7)
with open({d!r} + "/measures.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["height", "weight", "group"])
    for i in range(1000):
        h = random.gauss(170, 10)
        w.writerow([round(h, 1), round(h * 0.4 + random.gauss(0, 5), 1), "ab"[i % 2]])
print("rows written:", 1000)
"""
LOAD_AND_STATS = """
import numpy as np
data = np.genfromtxt({d!r} + "/measures.csv", delimiter=",", names=True, dtype=None,
                     encoding="utf-8")
for col in ("height", "weight"):
    v = data[col]
    print(f"{{col}}: n={{v.size}} mean={{v.mean():.2f}} std={{v.std():.2f}} "
          f"min={{v.min():.1f}} max={{v.max():.1f}}")
print("corr:", round(float(np.corrcoef(data["height"], data["weight"])[0, 1]), 3))
"""
PLOT_HIST = """
import matplotlib.pyplot as plt
plt.figure(figsize=(4, 3)); plt.hist(data["height"], bins=30); plt.title("height")
plt.show()
"""
PLOT_SCATTER = """
plt.figure(figsize=(4, 3)); plt.scatter(data["height"], data["weight"], s=3)
plt.title("weight by height"); plt.show()
"""
LOOP = f"""
import time
for step in range({LOOP_STEPS}):
    time.sleep(1)
    print(f"step {{step + 1}}/{LOOP_STEPS} done", flush=True)
print("loop finished")
"""
SAVE_FILE = """
import hashlib
blob = bytes(range(256)) * 4096
with open({d!r} + "/blob.bin", "wb") as fh:
    fh.write(blob)
print("sha256", hashlib.sha256(blob).hexdigest())
"""
READ_UPLOAD = """
import hashlib
got = open({d!r} + "/notes.txt", "rb").read()
print(got.decode().splitlines()[0], "| sha256", hashlib.sha256(got).hexdigest())
"""
CHUNK_BODY = """
if i == 37 and not fixed:
    raise ValueError(f"bad record at {i}")
sq = i * i
"""
BIG_OUTPUT = """
line = "x" * 49
for i in range(100_000):
    print(line)
"""


async def test_a_scripted_data_science_session(runtime: RuntimeProc, tmp_path: Path) -> None:
    d = f"session-{uuid.uuid4().hex[:8]}"
    session = "ds" + uuid.uuid4().hex[:6]
    q = {"session": session}
    (tmp_path / "saved").mkdir()
    notes = (tmp_path / "saved" / "notes.txt")
    notes_bytes = b"uploaded notes\n" + b"z" * 1000 + b"\n"
    notes.write_bytes(notes_bytes)
    tape: Tape | None = None
    try:
        async with Client(stdio_params(tmp_path, runtime, "--wait-budget",
                                       str(WAIT_BUDGET_S))) as client:
            tape = Tape(client)
            ok(await tape.call("check_colab_connection"))                                   # 1
            ok(await tape.call("probe_colab_environment"))                                  # 2
            assert "rows written: 1000" in ok(await tape.call(
                "run_code_quick", {"code": WRITE_CSV.format(d=d), **q}))                    # 3
            stats = ok(await tape.call("run_code_quick",
                                       {"code": LOAD_AND_STATS.format(d=d), **q}))          # 4
            assert "height: n=1000" in stats and "corr:" in stats
            for code in (PLOT_HIST, PLOT_SCATTER):                                          # 5, 6
                plot = await tape.call("run_code_quick", {"code": code, **q})
                ok(plot)
                assert any(isinstance(c, ImageContent) for c in plot.content)

            # A loop past the budget: the first answer says "running", get_job follows it.
            first = await tape.call("run_code_long", {"code": LOOP, **q})               # 7
            assert first.structured_content is not None
            job_id = first.structured_content["job_id"]
            assert first.structured_content["status"] == "running", text_of(first)
            seen = text_of(first)
            followed = first
            while followed.structured_content and followed.structured_content["status"] in (
                    "queued", "running"):
                followed = await tape.call("get_job", {"job_id": job_id})                    # 8 (9)
                seen += "\n" + text_of(followed)
            ok(followed)
            # In whichever answer it came: a later one does not repeat shown output.
            assert "loop finished" in seen
            for step in (1, LOOP_STEPS // 2, LOOP_STEPS):
                assert f"step {step}/{LOOP_STEPS} done" in seen
            loop_calls = len(tape.rows) - 6

            variables = ok(await tape.call("list_colab_variables", q))
            assert "data:" in variables and "blob" not in variables

            printed = ok(await tape.call("run_code_quick", {"code": SAVE_FILE.format(d=d), **q}))
            digest = printed.split("sha256 ")[1].split()[0]
            got = await tape.call("download_from_colab", {"path": f"{d}/blob.bin"})
            assert got.structured_content is not None, text_of(got)
            local = Path(got.structured_content["path"])
            assert hashlib.sha256(await anyio.Path(local).read_bytes()).hexdigest() == digest
            assert got.structured_content["sha256"] == digest

            ok(await tape.call("upload_to_colab", {"local_path": "notes.txt",
                                                   "remote_path": f"{d}/notes.txt"}))
            read = ok(await tape.call("run_code_quick", {"code": READ_UPLOAD.format(d=d), **q}))
            assert "uploaded notes" in read
            assert hashlib.sha256(notes_bytes).hexdigest() in read

            # A chunked operation fails at index 37, is fixed, and resumes after its last batch.
            chunk = {"loop_code": CHUNK_BODY, "n_iterations": 60, "batch_size": 10,
                     "checkpoint_name": f"squares-{d}", "collect": "sq",
                     "setup_code": "fixed = globals().get('fixed', False)", **q}
            failed = await tape.call("run_chunked_operation", chunk)
            assert failed.is_error and failed.structured_content is not None
            assert failed.structured_content["completed"] == 30
            assert "at index 37" in text_of(failed) and "bad record at 37" in text_of(failed)
            ok(await tape.call("run_code_quick", {"code": "fixed = True", **q}))
            resumed = await tape.call("run_chunked_operation", chunk)
            assert resumed.structured_content is not None, text_of(resumed)
            assert resumed.structured_content["status"] == "done", text_of(resumed)
            assert resumed.structured_content["completed"] == 60
            assert [b["start"] for b in resumed.structured_content["last_batches"]] == [30, 40, 50]
            values = await tape.call("get_checkpoint", {"name": f"squares-{d}",
                                                        "values_offset": 55, "values_limit": 5})
            assert "[59] 3481" in ok(values)

            # 5 MB of output: the result shows head and tail; pages read the rest.
            big = await tape.call("run_code_long", {"code": BIG_OUTPUT, **q})
            assert big.structured_content is not None
            big_id = big.structured_content["job_id"]
            while big.structured_content and big.structured_content["status"] in (
                    "queued", "running"):
                big = await tape.call("get_job", {"job_id": big_id})
            assert big.structured_content and big.structured_content["status"] == "succeeded"
            assert big.structured_content["output_bytes"] == 5_000_000
            omitted = text_of(big).split(" bytes of output omitted")[0].rsplit("[", 1)[1]
            assert int(omitted.replace(",", "")) > 4_900_000  # the note counts what is not shown
            page = await tape.call("get_job_output", {"job_id": big_id, "limit": 3000})
            assert page.structured_content is not None
            assert page.structured_content["total_bytes"] == 5_000_000
            middle = await tape.call("get_job_output", {"job_id": big_id, "offset": 2_500_000,
                                                        "limit": 3000})
            assert ok(middle).splitlines()[1] == "x" * 49

            listing = ok(await tape.call("list_jobs", {"session": session, "limit": 10}))
            assert big_id in listing
            ok(await tape.call("save_colab_variables", {"names": ["data"], **q}))
            ok(await tape.call("cleanup_colab", {"names": ["data"], **q}))
            restored = ok(await tape.call("restore_colab_variables", {"names": ["data"], **q}))
            assert "restored 1 variable" in restored
            ok(await tape.call("delete_checkpoint", {"name": f"squares-{d}"}))
    finally:
        if tape is not None and tape.rows:
            print("\n" + tape.report())
    assert tape is not None
    assert len(tape.rows) >= CALLS and loop_calls >= 2, tape.report()
    total = sum(r[1] for r in tape.rows)
    assert total <= TOTAL_TEXT_CAP, tape.report()
    assert max(r[1] for r in tape.rows) <= RESULT_CAP, tape.report()
    assert max(r[2] for r in tape.rows) <= ANSWER_WITHIN_S, tape.report()
