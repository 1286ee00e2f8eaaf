"""Tools about runtimes themselves: connection, probe, variables, cleanup, restart, registry."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from mcp.types import CallToolResult, TextContent
from pydantic import Field

from smartcolab.client.backend import Capability
from smartcolab.client.registry import check_name, check_url
from smartcolab.client.secret_source import resolve_secret
from smartcolab.mcp.annotations import ADDS, READS_LOCAL, READS_REMOTE, REPLACES_REMOTE, RUNS
from smartcolab.mcp.deps import BridgeContext, deps_of
from smartcolab.mcp.jobflow import epoch_note
from smartcolab.mcp.params import RuntimeName, SessionName, ToolDef
from smartcolab.mcp.tool_errors import translated
from smartcolab.shared.protocol import CleanupRequest, Probe


def _text(text: str, structured: dict[str, Any] | None = None) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=structured)


def _gb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e9:.2f} GB"


async def check_colab_connection(ctx: BridgeContext,
                                 runtime: RuntimeName = None) -> CallToolResult:
    """Check that a runtime answers and that the secret is accepted; quick (seconds).

    Returns the URL, the round-trip latency, the server version and epoch. Call this
    first when other tools report the runtime unreachable.
    """
    deps = deps_of(ctx)
    with translated(runtime):
        spec, client = await deps.registry.client(runtime)
        started = time.perf_counter()
        health = await client.health()
        await client.sessions()  # an authenticated call: proves the secret
        latency_ms = (time.perf_counter() - started) * 1000
        info = {"runtime": spec.name, "url": spec.url, "status": health.status,
                "version": health.version, "epoch": health.epoch,
                "latency_ms": round(latency_ms, 1), "authenticated": True}
        return _text(f"runtime {spec.name!r} at {spec.url} is {health.status} "
                     f"(version {health.version}, epoch {health.epoch}, "
                     f"{latency_ms:.0f} ms for two round trips; secret accepted).", info)


async def probe_colab_environment(ctx: BridgeContext, runtime: RuntimeName = None) -> Probe:
    """Describe the runtime's machine: platform, GPU(s), CPU, RAM, disk, key packages.

    Call before heavy work to choose batch sizes or check that a GPU is attached.
    """
    deps = deps_of(ctx)
    with translated(runtime):
        _, client = await deps.registry.client(runtime)
        return await client.probe()


async def list_colab_variables(
    ctx: BridgeContext,
    session: SessionName = "main",
    include_private: Annotated[bool, Field(
        description="Also list names starting with an underscore.")] = False,
    runtime: RuntimeName = None,
) -> CallToolResult:
    """List the variables defined in a session: name, type, shape/length, size, preview."""
    deps = deps_of(ctx)
    with translated(runtime):
        spec, client = await deps.registry.client(runtime)
        listing = await client.variables(session, include_private=include_private)
        change = deps.epochs.observe(spec.name, listing.session, listing.epoch)
        rows = []
        for v in listing.variables:
            shape = f" shape={tuple(v.shape)}" if v.shape is not None else (
                f" len={v.length}" if v.length is not None else "")
            dtype = f" dtype={v.dtype}" if v.dtype else ""
            size = f" {v.size_bytes:,} B" if v.size_bytes is not None else ""
            preview = f" = {v.preview}" if v.preview else ""
            rows.append(f"{v.name}: {v.type}{shape}{dtype}{size}{preview}")
        text = (f"{len(rows)} variable(s) in session {session!r} on {spec.name!r}:\n"
                + ("\n".join(rows) or "(none)"))
        if change:
            text += "\n\n" + epoch_note(deps, change)
        return _text(text, listing.model_dump(mode="json"))


async def cleanup_colab(
    ctx: BridgeContext,
    session: SessionName = "main",
    reset: Annotated[bool, Field(description="Delete EVERY user variable (like %reset).")] = False,
    names: Annotated[list[str], Field(
        max_length=1000, description="Delete just these variables.")] = [],  # noqa: B006
    runtime: RuntimeName = None,
) -> CallToolResult:
    """Free memory on the runtime without restarting it.

    Always runs garbage collection, closes matplotlib figures and empties the GPU
    cache; deletes variables only when asked (`names`, or `reset=true` for all).
    Returns the memory freed.
    """
    deps = deps_of(ctx)
    with translated(runtime):
        spec, client = await deps.registry.client(runtime)
        report = await client.cleanup(session, CleanupRequest(reset=reset, names=names))
        text = (f"cleanup of session {session!r} on {spec.name!r}: freed "
                f"{_gb(report.freed_bytes)} RAM (RSS {_gb(report.rss_before)} -> "
                f"{_gb(report.rss_after)}), {report.collected_objects} objects collected, "
                f"{report.closed_figures} figures closed"
                + (f", GPU freed {_gb(report.gpu_freed_bytes)}" if report.gpu_freed_bytes else "")
                + (f", deleted: {', '.join(report.deleted)}" if report.deleted else "")
                + "".join(f"\n- {n}" for n in report.notes))
        return _text(text, report.model_dump(mode="json"))


async def restart_colab_runtime(ctx: BridgeContext, session: SessionName = "main",
                                runtime: RuntimeName = None) -> CallToolResult:
    """Restart a session's Python kernel: ALL its variables and imports are lost.

    Use when the kernel is wedged, memory cannot be freed, or after installing
    packages that need a restart. Files on disk are kept.
    """
    deps = deps_of(ctx)
    with translated(runtime):
        spec, client = await deps.registry.client(runtime)
        view = await client.restart_session(session)
        deps.epochs.expect(spec.name, view.name, view.epoch)
        return _text(f"session {session!r} on {spec.name!r} restarted (status {view.status}, "
                     f"new epoch {view.epoch}). Variables and imports are gone: re-run "
                     "your setup code.", view.model_dump(mode="json"))


async def list_runtimes(ctx: BridgeContext) -> CallToolResult:
    """List the configured runtimes (name, URL, description) and which is the default."""
    deps = deps_of(ctx)
    specs = deps.registry.specs()
    rows = [f"{'*' if s.name == deps.registry.default else ' '} {s.name}: {s.url}"
            + (f" - {s.description}" if s.description else "") for s in specs]
    return _text("runtimes (* = default):\n" + "\n".join(rows),
                 {"default": deps.registry.default, "runtimes": [s.public() for s in specs]})


async def connect_runtime(
    name: Annotated[str, Field(description="Runtime name, e.g. 'colab'; new names are added.")],
    url: Annotated[str, Field(description="The runtime's URL as printed by the notebook.")],
    ctx: BridgeContext,
    secret_name: Annotated[str | None, Field(
        max_length=64, description="Use the secret stored for this runtime name with "
                                   "'smartcolab runtimes add NAME URL --ask-secret'. "
                                   "Default: the name's current or stored secret.")] = None,
    secret_env: Annotated[str | None, Field(
        max_length=128, description="Or: an environment variable of the bridge that holds "
                                    "the secret (COLAB_TOKEN, JUPYTER_TOKEN, SMARTCOLAB_SECRET*, "
                                    "or one the runtimes file names).")] = None,
    secret: Annotated[str | None, Field(
        min_length=1, max_length=4096,
        description="Only if the user insists on typing the secret into the chat: it stays "
                    "in the transcript. Needs secret_in_transcript=true.")] = None,
    secret_in_transcript: Annotated[bool, Field(
        description="The user accepts that a raw secret passes through the model.")] = False,
    make_default: Annotated[bool, Field(
        description="Use this runtime when a tool call names none.")] = True,
    kind: Annotated[Literal["runtime", "jupyter", "colab"] | None, Field(
        description="'runtime': a smartcolab runtime server; 'jupyter': a plain Jupyter "
                    "Server or JupyterHub user server (secret = its token); 'colab': a "
                    "runtime Colab assigns to the user's Google account (url = "
                    "https://colab.research.google.com, no secret; the user signs in once "
                    "with 'smartcolab runtimes add NAME --kind colab'). Default: the "
                    "name's current kind, else 'runtime'.")] = None,
    accelerator: Annotated[Literal["CPU", "T4", "L4", "G4", "A100", "H100", "V5E1", "V6E1"]
                           | None, Field(description="Kind 'colab' only: the machine to "
                                         "assign (default CPU).")] = None,
) -> CallToolResult:
    """Point a runtime name at a new URL, without restarting the MCP client.

    Use when the notebook was restarted and printed a new tunnel URL. Never ask the
    user to paste a secret into the chat: the secret is found by reference (the one
    stored with `smartcolab runtimes add NAME URL --ask-secret` in a terminal, or an
    environment variable); a raw `secret` works only with secret_in_transcript=true.
    The connection is checked before this returns.
    """
    deps = deps_of(ctx)
    with translated(name):
        check_name(name)
        check_url(url)  # before the secret: a bad name or URL is the error to show
        token = resolve_secret(name, secret=secret, secret_in_transcript=secret_in_transcript,
                               secret_env=secret_env, secret_name=secret_name,
                               known=deps.registry.specs())
        options = None if accelerator is None else {"accelerator": accelerator}
        spec = await deps.registry.connect(name, url, token, make_default=make_default,
                                           kind=kind, options=options)
        deps.epochs.forget_runtime(name)
        _, client = await deps.registry.client(name)
        health = await client.health()
        await client.sessions()
        return _text(f"runtime {name!r} now points at {spec.url} (status {health.status}, "
                     f"epoch {health.epoch})" + (" and is the default." if make_default else "."),
                     {**spec.public(), "default": deps.registry.default,
                      "epoch": health.epoch})

async def release_runtime(
    ctx: BridgeContext,
    runtime: Annotated[str, Field(description="The name of a runtime of kind 'colab'.")],
) -> CallToolResult:
    """Give a Colab runtime back to Colab now (frees its GPU and the user's quota).

    Everything on it is lost: variables, and files not on Drive or downloaded. The next
    call to that runtime name assigns a fresh one. Only for runtimes Colab assigned.
    """
    deps = deps_of(ctx)
    with translated(runtime):
        _, client = await deps.registry.client(runtime)
        client.require(Capability.RELEASE)
        released = await client.release()
        deps.epochs.forget_runtime(runtime)
        return _text(f"runtime {runtime!r} " + ("was released: its state is gone; the next call "
                     "assigns a fresh one." if released else "held no Colab runtime."),
                     {"runtime": runtime, "released": released})


TOOLS = [
    ToolDef(check_colab_connection, "Check runtime connection", READS_REMOTE),
    ToolDef(probe_colab_environment, "Probe runtime machine", READS_REMOTE),
    ToolDef(list_colab_variables, "List variables", READS_REMOTE),
    ToolDef(cleanup_colab, "Free runtime memory", RUNS),
    ToolDef(restart_colab_runtime, "Restart kernel", RUNS),
    ToolDef(list_runtimes, "List runtimes", READS_LOCAL),
    ToolDef(connect_runtime, "Connect a runtime", ADDS),
    ToolDef(release_runtime, "Release a Colab runtime", REPLACES_REMOTE),
]
