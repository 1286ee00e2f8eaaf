"""Tools about runtimes themselves: connection, probe, variables, cleanup, restart, registry."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from smartcolab.client.registry import check_name, check_url
from smartcolab.client.secret_source import resolve_secret
from smartcolab.mcp.deps import BridgeDeps
from smartcolab.mcp.jobflow import epoch_note
from smartcolab.mcp.params import RuntimeName, SessionName, register_tool
from smartcolab.mcp.tool_errors import translated
from smartcolab.shared.protocol import CleanupRequest, Probe

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=True)
LOCAL_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                             open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                              open_world_hint=True)
CONFIGURES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                             open_world_hint=True)


def _text(text: str, structured: dict[str, Any] | None = None) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=structured)


def _gb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e9:.2f} GB"


def register(server: MCPServer, deps: BridgeDeps) -> None:
    async def check_colab_connection(runtime: RuntimeName = None) -> CallToolResult:
        """Check that a runtime answers and that the secret is accepted; quick (seconds).

        Returns the URL, the round-trip latency, the server version and epoch. Call this
        first when other tools report the runtime unreachable.
        """
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

    async def probe_colab_environment(runtime: RuntimeName = None) -> Probe:
        """Describe the runtime's machine: platform, GPU(s), CPU, RAM, disk, key packages.

        Call before heavy work to choose batch sizes or check that a GPU is attached.
        """
        with translated(runtime):
            _, client = await deps.registry.client(runtime)
            return await client.probe()

    async def list_colab_variables(
        session: SessionName = "main",
        include_private: Annotated[bool, Field(
            description="Also list names starting with an underscore.")] = False,
        runtime: RuntimeName = None,
    ) -> CallToolResult:
        """List the variables defined in a session: name, type, shape/length, size, preview."""
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

    async def restart_colab_runtime(session: SessionName = "main",
                                    runtime: RuntimeName = None) -> CallToolResult:
        """Restart a session's Python kernel: ALL its variables and imports are lost.

        Use when the kernel is wedged, memory cannot be freed, or after installing
        packages that need a restart. Files on disk are kept.
        """
        with translated(runtime):
            spec, client = await deps.registry.client(runtime)
            view = await client.restart_session(session)
            deps.epochs.expect(spec.name, view.name, view.epoch)
            return _text(f"session {session!r} on {spec.name!r} restarted (status {view.status}, "
                         f"new epoch {view.epoch}). Variables and imports are gone: re-run "
                         "your setup code.", view.model_dump(mode="json"))

    async def list_runtimes() -> CallToolResult:
        """List the configured runtimes (name, URL, description) and which is the default."""
        specs = deps.registry.specs()
        rows = [f"{'*' if s.name == deps.registry.default else ' '} {s.name}: {s.url}"
                + (f" - {s.description}" if s.description else "") for s in specs]
        return _text("runtimes (* = default):\n" + "\n".join(rows),
                     {"default": deps.registry.default, "runtimes": [s.public() for s in specs]})

    async def connect_runtime(
        name: Annotated[str, Field(description="Runtime name, e.g. 'colab'; new names are added.")],
        url: Annotated[str, Field(description="The runtime's URL as printed by the notebook.")],
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
        kind: Annotated[Literal["runtime", "jupyter"] | None, Field(
            description="'runtime': a smartcolab runtime server; 'jupyter': a plain Jupyter "
                        "Server or JupyterHub user server (secret = its token). Default: the "
                        "name's current kind, else 'runtime'.")] = None,
    ) -> CallToolResult:
        """Point a runtime name at a new URL, without restarting the MCP client.

        Use when the notebook was restarted and printed a new tunnel URL. Never ask the
        user to paste a secret into the chat: the secret is found by reference (the one
        stored with `smartcolab runtimes add NAME URL --ask-secret` in a terminal, or an
        environment variable); a raw `secret` works only with secret_in_transcript=true.
        The connection is checked before this returns.
        """
        with translated(name):
            check_name(name)
            check_url(url)  # before the secret: a bad name or URL is the error to show
            token = resolve_secret(name, secret=secret, secret_in_transcript=secret_in_transcript,
                                   secret_env=secret_env, secret_name=secret_name,
                                   known=deps.registry.specs())
            spec = await deps.registry.connect(name, url, token, make_default=make_default,
                                               kind=kind)
            deps.epochs.forget_runtime(name)
            _, client = await deps.registry.client(name)
            health = await client.health()
            await client.sessions()
            return _text(f"runtime {name!r} now points at {spec.url} (status {health.status}, "
                         f"epoch {health.epoch})" + (" and is the default." if make_default else "."),
                         {**spec.public(), "default": deps.registry.default,
                          "epoch": health.epoch})

    register_tool(server, check_colab_connection, annotations=READ_ONLY, title="Check runtime connection")
    register_tool(server, probe_colab_environment, annotations=READ_ONLY, title="Probe runtime machine")
    register_tool(server, list_colab_variables, annotations=READ_ONLY, title="List variables")
    register_tool(server, cleanup_colab, annotations=DESTRUCTIVE, title="Free runtime memory")
    register_tool(server, restart_colab_runtime, annotations=DESTRUCTIVE, title="Restart kernel")
    register_tool(server, list_runtimes, annotations=LOCAL_READ, title="List runtimes")
    register_tool(server, connect_runtime, annotations=CONFIGURES, title="Connect a runtime")
