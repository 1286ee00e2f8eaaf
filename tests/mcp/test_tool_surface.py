"""The tool surface a model pays for in every conversation, and how it refuses bad calls.

In process against the fake backend (tests/support/fake_backend.py): the definitions'
size cap, strict arguments with plain errors, descriptions that match behaviour,
run_code_quick's timeout, connect_runtime with an unreachable URL, get_job_output pages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import CallToolResult

from mcp import Client
from smartcolab.client.registry import RuntimeSpec, default_factories
from smartcolab.mcp.deps import BridgeSettings
from smartcolab.mcp.server import BridgeConfig, build_server
from smartcolab.mcp.tool_errors import to_tool_error
from smartcolab.shared.errors import BadRequest, Forbidden, NotFound, SessionBusy, SmartColabError
from support.bridge_helpers import FAST_RETRY, text_of
from support.fake_backend import FakeBackend

pytestmark = pytest.mark.anyio

# tools/list as a client receives it, on both wires (the 2025-11-25 one adds
# execution.taskSupport): at most the cap of 15,000 characters. The notebook
# tools of issue 18 (two tools) were paid for with shorter wording elsewhere and no
# published ">= 0" bounds (the server still checks them).
CAP_CHARS = 15_000


def config(tmp: Path, backend: FakeBackend, **settings: Any) -> BridgeConfig:
    return BridgeConfig(
        settings=BridgeSettings(save_dir=tmp / "saved", checkpoint_dir=tmp / "ckpt",
                                wait_budget_s=0.5, progress_interval_s=0.1, **settings),
        runtimes=[RuntimeSpec("fake", "http://fake.invalid", kind="fake")],
        default_runtime="fake", embedded=False,
        factories={**default_factories(FAST_RETRY), "fake": backend.factory()})


async def call(client: Client, tool: str, args: dict[str, Any]) -> CallToolResult:
    with anyio.fail_after(20):
        return await client.call_tool(tool, args)


async def _definitions(tmp: Path, mode: str = "auto") -> list[dict[str, Any]]:
    # "legacy" (2025-11-25) is the wire where tools/list also carries execution.taskSupport.
    async with Client(build_server(config(tmp, FakeBackend())), mode=mode) as client:  # type: ignore[arg-type]
        tools = (await client.list_tools()).tools
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]


def _size(definition: dict[str, Any]) -> int:
    return len(json.dumps(definition, separators=(",", ":"), ensure_ascii=False))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_all_tool_definitions_fit_the_cap(tmp_path: Path, mode: str) -> None:
    defs = await _definitions(tmp_path, mode)
    sizes = sorted(((_size(d), d["name"]) for d in defs), reverse=True)
    total = sum(n for n, _ in sizes)
    print(f"\ntools/list ({mode}): {len(defs)} tools, {total:,} characters "
          f"(cap {CAP_CHARS:,})")
    for n, name in sizes:
        print(f"  {n:6,}  {name}")
    assert len(defs) == 25  # no capability dropped to fit (the notebook tools are 24-25)
    assert total <= CAP_CHARS, sizes


async def test_definitions_carry_no_generated_noise(tmp_path: Path) -> None:
    defs = await _definitions(tmp_path)
    text = json.dumps(defs)
    assert "Arguments" not in text  # pydantic's model titles ("run_code_quickArguments")
    for d in defs:
        assert "title" not in d, d["name"]
        for name, prop in d["inputSchema"].get("properties", {}).items():
            assert "title" not in prop, (d["name"], name)
    by_name = {d["name"]: d for d in defs}
    # The runtime parameter is described once, in list_runtimes, not in every tool.
    runtime_described = [d["name"] for d in defs
                         if "description" in d["inputSchema"].get("properties", {})
                         .get("runtime", {})]
    assert runtime_described == ["release_runtime"]  # there it is the required subject
    assert "`runtime` argument" in by_name["list_runtimes"]["description"]
    # Dask is one optional parameter of the one tool that can use it.
    assert [d["name"] for d in defs if "dask" in json.dumps(d["inputSchema"]).lower()] == [
        "run_chunked_operation"]


async def test_descriptions_match_behaviour(tmp_path: Path) -> None:
    by_name = {d["name"]: d for d in await _definitions(tmp_path)}
    wait = by_name["get_checkpoint"]["inputSchema"]["properties"]["wait"]
    assert wait["default"] == 0  # it returns at once unless asked to wait
    assert "default" not in wait["description"]
    assert "waits only if `wait`" in by_name["get_checkpoint"]["description"]
    page = by_name["get_job_output"]["inputSchema"]["properties"]["limit"]
    assert "maximum" not in page or page["maximum"] <= 20_000
    assert page["default"] == 20_000 - 300  # a page fills the result cap with its header
    quick = by_name["run_code_quick"]["inputSchema"]["properties"]["timeout"]
    assert quick["default"] == 120.0


@pytest.mark.parametrize(("tool", "args", "expected"), [
    ("run_code_quick", {"code": "print:x", "timeot": 5}, "unknown argument: 'timeot'"),
    ("get_job", {"job_id": "j1", "wait": "60"}, "wait: Input should be a valid number"),
    ("run_code_long", {"code": "print:x", "background": "yes"},
     "background: Input should be a valid boolean"),
    ("run_code_long", {"code": "print:x", "background": 1},
     "background: Input should be a valid boolean"),
    ("list_jobs", {"limit": "5"}, "send numbers and booleans unquoted"),
    ("run_code_long", {"code": "print:x", "timeout": 0}, "timeout: Input should be greater than 0"),
    ("get_job", {"job_id": "j1", "wait": -1}, "wait: Input should be greater than or equal to 0"),
    ("run_code_quick", {}, "code: required"),
    ("run_chunked_operation", {"loop_code": "x = i", "n_iterations": 3,
                               "checkpoint_name": "c", "engine": "dask"},
     "unknown argument: 'engine'"),
])
async def test_arguments_are_strict_and_errors_plain(tmp_path: Path, tool: str,
                                                     args: dict[str, Any], expected: str) -> None:
    backend = FakeBackend()
    async with Client(build_server(config(tmp_path, backend))) as client:
        result = await call(client, tool, args)
    text = text_of(result)
    assert result.is_error, text
    assert expected in text
    assert "pydantic" not in text and "http" not in text and "For further information" not in text
    assert text.startswith(f"invalid_input: bad arguments for {tool}.")
    assert "Valid arguments: " in text
    assert not any(name == "submit" for name, _ in backend.calls)  # nothing ran


async def test_the_error_lists_the_valid_arguments(tmp_path: Path) -> None:
    async with Client(build_server(config(tmp_path, FakeBackend()))) as client:
        result = await call(client, "run_code_quick", {"code": "print:x", "wait": 5})
    assert result.is_error
    assert "Valid arguments: code (required), timeout, session, runtime." in text_of(result)


async def test_numbers_and_json_lists_still_pass(tmp_path: Path) -> None:
    backend = FakeBackend()
    async with Client(build_server(config(tmp_path, backend))) as client:
        ok = await call(client, "run_code_long", {"code": "print:x", "timeout": 60})
        # Some clients send a list as a JSON string: that is not a type coercion.
        listed = await call(client, "cleanup_colab", {"names": '["a", "b"]'})
    assert not ok.is_error, text_of(ok)
    assert not listed.is_error, text_of(listed)
    assert [r.job.timeout for r in backend.jobs.values()] == [60.0]


async def test_run_code_quick_takes_a_timeout_up_to_its_default(tmp_path: Path) -> None:
    backend = FakeBackend()
    async with Client(build_server(config(tmp_path, backend))) as client:
        short = await call(client, "run_code_quick", {"code": "print:x", "timeout": 5})
        default = await call(client, "run_code_quick", {"code": "print:y"})
        too_long = await call(client, "run_code_quick", {"code": "print:z", "timeout": 300})
    assert not short.is_error and not default.is_error
    assert [r.job.timeout for r in backend.jobs.values()] == [5.0, 120.0]
    assert too_long.is_error and "at most 120 s" in text_of(too_long)
    assert "run_code_long" in text_of(too_long)


async def test_connect_runtime_does_not_keep_a_url_it_cannot_reach(tmp_path: Path) -> None:
    down = "http://127.0.0.1:1"  # nothing listens on port 1: refused at once
    args = {"url": down, "secret": "s3cr3t-value", "secret_in_transcript": True}
    async with Client(build_server(config(tmp_path, FakeBackend()))) as client:
        new = await call(client, "connect_runtime", {"name": "away", **args})
        repoint = await call(client, "connect_runtime", {"name": "fake", **args, "kind": "runtime"})
        listing = await call(client, "list_runtimes", {})
        kept = await call(client, "connect_runtime",
                          {"name": "later", **args, "keep_unreachable": True})
        after = await call(client, "list_runtimes", {})
    assert new.is_error and "'away' was not added" in text_of(new)
    assert "keep_unreachable=true" in text_of(new)
    assert repoint.is_error and "'fake' still points at http://fake.invalid" in text_of(repoint)
    assert listing.structured_content is not None
    assert [r["name"] for r in listing.structured_content["runtimes"]] == ["fake"]
    assert listing.structured_content["default"] == "fake"
    assert not kept.is_error and "kept although the check failed" in text_of(kept)
    assert after.structured_content is not None
    assert [r["name"] for r in after.structured_content["runtimes"]] == ["fake", "later"]


async def test_output_pages_fill_the_result_cap(tmp_path: Path) -> None:
    backend = FakeBackend()
    cap = 2_000
    async with Client(build_server(config(tmp_path, backend, max_result_chars=cap))) as client:
        run = await call(client, "run_code_long", {"code": "print:" + "x" * 9_000 + "END"})
        assert run.structured_content is not None
        job_id = run.structured_content["job_id"]
        first = await call(client, "get_job_output", {"job_id": job_id})
        big = await call(client, "get_job_output", {"job_id": job_id, "limit": 100_000})
    page = first.structured_content
    assert page is not None
    assert page["next_offset"] == cap - 300 and page["chars"] == cap - 300
    assert len(text_of(first)) <= cap
    assert "bytes 0-1,700 of 9,003" in text_of(first)
    assert "7,303 bytes after this page (about 5 pages of this size)" in text_of(first)
    assert "limit lowered to 1,700" in text_of(big)
    assert big.structured_content is not None and big.structured_content["chars"] == cap - 300


@pytest.mark.parametrize(("error", "expected"), [
    (SessionBusy("session 'main' is busy running job 'j1'; retry when it finishes "
                 "(long-poll the job with GET /jobs/{id}?wait=55)"), "wait for it with get_job"),
    (NotFound("no saved snapshot 'x' in /d (snapshots: none); save one first with "
              "POST /sessions/{name}/save"), "save one first with save_colab_variables"),
    (Forbidden("the main session cannot be deleted; restart it instead "
               "(POST /sessions/main/restart)"), "restart it instead with restart_colab_runtime"),
    (BadRequest("'a' is not a regular file; download a directory with GET /files/archive"),
     "download a directory with download_from_colab"),
    (Forbidden("this runtime allows at most 8 sessions; delete one (DELETE /sessions/{name}) "
               "first"), "use one of the existing sessions"),
])
def test_hints_name_tools_not_endpoints(error: SmartColabError, expected: str) -> None:
    text = to_tool_error(error).args[0]
    assert expected in text
    assert not re.search(r"\b(GET|POST|PUT|DELETE) /", text), text


async def test_an_upload_refusal_says_what_to_do(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    async with Client(build_server(config(tmp_path, FakeBackend()))) as client:
        refused = await call(client, "upload_to_colab", {"local_path": str(outside)})
    text = text_of(refused)
    assert refused.is_error and "local_path_refused" in text
    assert "check_colab_connection" not in text and "--upload-root" in text


async def test_connect_runtime_needs_a_url_except_for_kind_colab(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no stored Colab sign-in here
    monkeypatch.delenv("SMARTCOLAB_COLAB_PYTHON", raising=False)
    async with Client(build_server(config(tmp_path, FakeBackend()))) as client:
        plain = await call(client, "connect_runtime", {"name": "box"})
        colab = await call(client, "connect_runtime", {"name": "gpu", "kind": "colab"})
        listing = await call(client, "list_runtimes", {})
    assert plain.is_error and "url: needed" in text_of(plain)
    # Kind colab needs no URL: it gets as far as the official package, which a bridge
    # under 3.11 with no 3.12 named cannot run (it says how to get one), or, under 3.12,
    # as far as the one-time sign-in it asks for.
    assert colab.is_error and "url: needed" not in text_of(colab)
    assert "google-colab-cli" in text_of(colab) or "sign in" in text_of(colab), text_of(colab)
    assert listing.structured_content is not None
    assert [r["name"] for r in listing.structured_content["runtimes"]] == ["fake"]
