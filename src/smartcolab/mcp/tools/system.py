"""Tools about runtimes themselves: connection, probe, variables, cleanup, restart, registry."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from mcp.types import CallToolResult, TextContent
from pydantic import Field

from smartcolab.client.backend import Capability
from smartcolab.client.colab.service import COLAB_DOMAIN
from smartcolab.client.registry import RuntimeSpec, check_name, check_url
from smartcolab.client.secret_source import resolve_secret
from smartcolab.mcp.annotations import ADDS, READS_LOCAL, READS_REMOTE, REPLACES_REMOTE, RUNS
from smartcolab.mcp.deps import BridgeContext, deps_of
from smartcolab.mcp.jobflow import epoch_note
from smartcolab.mcp.params import RuntimeName, SessionName, ToolDef
from smartcolab.mcp.tool_errors import translated
from smartcolab.shared.errors import InvalidInput, SmartColabError
from smartcolab.shared.protocol import CleanupRequest, Probe

TAB_WAIT_S = 120.0  # the longest wait for a Colab tab to connect


def _text(text: str, structured: dict[str, Any] | None = None) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=structured)


def _gb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e9:.2f} GB"


async def check_colab_connection(ctx: BridgeContext,
                                 runtime: RuntimeName = None) -> CallToolResult:
    """Check a runtime answers and accepts its secret (latency, version, epoch); call
    first when it seems unreachable."""
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


async def probe_colab_environment(ctx: BridgeContext,
                                  runtime: RuntimeName = None) -> CallToolResult:
    """The runtime's machine: platform, GPUs, CPU, RAM, disk, key packages; check
    before heavy work."""
    deps = deps_of(ctx)
    with translated(runtime):
        spec, client = await deps.registry.client(runtime)
        probe = await client.probe()
        return _text(probe_text(spec.name, probe), probe.model_dump(mode="json"))


def probe_text(name: str, p: Probe) -> str:
    """A probe as lines a model reads at a glance (the structured content has it all)."""
    gpus = "; ".join(f"{g.name} ({g.memory_used_mb:,}/{g.memory_total_mb:,} MB used"
                     + (f", {g.utilization_pct:.0f}% busy" if g.utilization_pct is not None
                        else "") + ")" for g in p.gpus) or "none"
    left = (f", about {p.session_time_left_s / 3600:.1f} h left"
            if p.session_time_left_s is not None else "")
    lines = [f"runtime {name!r}: {p.platform}, accelerator {p.accelerator}, Python {p.python}, "
             f"server {p.version} (epoch {p.epoch}), up {p.server_uptime_s / 60:.0f} min{left}",
             f"CPU: {p.cpu_count} cores, load {', '.join(f'{x:.2f}' for x in p.load_avg)}",
             f"RAM: {_gb(p.ram_available_bytes)} free of {_gb(p.ram_total_bytes)}",
             f"disk {p.disk_root}: {_gb(p.disk_free_bytes)} free of {_gb(p.disk_total_bytes)}",
             f"GPUs: {gpus}",
             "packages: " + (", ".join(f"{k} {v}" for k, v in sorted(p.packages.items()))
                             or "none found")]
    lines += [f"note: {n}" for n in p.notes]
    return "\n".join(lines)


async def list_colab_variables(
    ctx: BridgeContext,
    session: SessionName = "main",
    include_private: Annotated[bool, Field(description="Also names starting with '_'.")] = False,
    runtime: RuntimeName = None,
) -> CallToolResult:
    """Variables of a session: name, type, shape or length, size, preview."""
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
    reset: Annotated[bool, Field(description="Delete EVERY user variable.")] = False,
    names: Annotated[list[str], Field(
        max_length=1000, description="Delete these variables.")] = [],  # noqa: B006
    runtime: RuntimeName = None,
) -> CallToolResult:
    """Free memory without a restart (gc, figures, GPU cache; deletes variables only if
    asked)."""
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
    """Restart a session's kernel: ALL variables and imports are lost, files stay (for
    a wedged kernel, stuck memory)."""
    deps = deps_of(ctx)
    with translated(runtime):
        spec, client = await deps.registry.client(runtime)
        view = await client.restart_session(session)
        deps.epochs.expect(spec.name, view.name, view.epoch)
        return _text(f"session {session!r} on {spec.name!r} restarted (status {view.status}, "
                     f"new epoch {view.epoch}). Variables and imports are gone: re-run "
                     "your setup code.", view.model_dump(mode="json"))


async def list_runtimes(ctx: BridgeContext) -> CallToolResult:
    """Configured runtimes (name, URL, description). Every tool's `runtime` argument
    takes one of these names; omitted: the default."""
    deps = deps_of(ctx)
    specs = deps.registry.specs()
    rows = [f"{'*' if s.name == deps.registry.default else ' '} {s.name}: {s.url}"
            + (f" - {s.description}" if s.description else "") for s in specs]
    return _text("runtimes (* = default):\n" + "\n".join(rows),
                 {"default": deps.registry.default, "runtimes": [s.public() for s in specs]})


async def connect_runtime(
    name: Annotated[str, Field(description="Runtime name, e.g. 'colab'; new names are added.")],
    ctx: BridgeContext,
    url: Annotated[str | None, Field(description="The URL the notebook printed.")] = None,
    secret_name: Annotated[str | None, Field(
        max_length=64, description="Its stored secret's name ('smartcolab runtimes add "
                                   "--ask-secret'); default: name.")] = None,
    secret_env: Annotated[str | None, Field(
        max_length=128, description="Or the bridge's environment variable holding it, "
                                    "e.g. COLAB_TOKEN.")] = None,
    secret: Annotated[str | None, Field(
        min_length=1, max_length=4096,
        description="A raw secret (stays in the transcript; needs "
                    "secret_in_transcript).")] = None,
    secret_in_transcript: Annotated[bool, Field(
        description="The user accepts a raw secret in the chat.")] = False,
    make_default: Annotated[bool, Field(description="Use it when a call names none.")] = True,
    kind: Annotated[Literal["runtime", "jupyter", "colab", "colab-tab"] | None, Field(
        description="'runtime' (smartcolab server), 'jupyter' (Jupyter Server/Hub; token as "
                    "secret), 'colab' (after 'smartcolab runtimes add NAME --kind colab'), "
                    "'colab-tab' (the user's open notebook, a name per tab); colab kinds: "
                    "no url, no secret.")] = None,
    accelerator: Annotated[Literal["CPU", "T4", "L4", "G4", "A100", "H100", "V5E1", "V6E1"]
                           | None, Field(description="Kind 'colab': the machine (default "
                                                     "CPU).")] = None,
    keep_unreachable: Annotated[bool, Field(
        description="Keep the URL even if the check fails.")] = False,
    wait: Annotated[float | None, Field(
        ge=0, le=TAB_WAIT_S, description="Kind 'colab-tab': seconds to wait for the tab "
                                         "(default: wait budget).")] = None,
) -> CallToolResult:
    """Point a runtime name at a new URL (e.g. a new tunnel URL), checked first (kept
    if failing only with keep_unreachable=true). Never ask the user to paste a secret
    into the chat: name it (secret_name, secret_env).
    """
    deps = deps_of(ctx)
    with translated(name):
        check_name(name)
        previous = next((s for s in deps.registry.specs() if s.name == name), None)
        if kind == "colab-tab" or (kind is None and previous and previous.kind == "colab-tab"):
            return await _connect_tab(ctx, name, previous, make_default, wait)
        if url is None:
            if kind != "colab":
                raise InvalidInput("url: needed (the URL the notebook or server printed); "
                                   "only kinds 'colab' and 'colab-tab' find their runtime "
                                   "without one")
            url = COLAB_DOMAIN
        check_url(url)  # before the secret: a bad name or URL is the error to show
        token = resolve_secret(name, secret=secret, secret_in_transcript=secret_in_transcript,
                               secret_env=secret_env, secret_name=secret_name,
                               known=deps.registry.specs())
        options = None if accelerator is None else {"accelerator": accelerator}
        was_default = deps.registry.default
        spec = await deps.registry.connect(name, url, token, make_default=make_default,
                                           kind=kind, options=options)
        deps.epochs.forget_runtime(name)
        try:
            _, client = await deps.registry.client(name)
            health = await client.health()
            await client.sessions()
        except SmartColabError as exc:
            if keep_unreachable:
                return _text(f"runtime {name!r} now points at {spec.url}, kept although the "
                             f"check failed ({exc.code}: {exc.message})",
                             {**spec.public(), "default": deps.registry.default,
                              "reachable": False})
            await deps.registry.undo_connect(name, previous, was_default)
            kept = (f"{name!r} still points at {previous.url}" if previous
                    else f"{name!r} was not added")
            exc.message = (f"{exc.message}\nThe connection check failed, so {kept} "
                           "(keep_unreachable=true keeps a URL that cannot be reached now).")
            raise
        return _text(f"runtime {name!r} now points at {spec.url} (status {health.status}, "
                     f"epoch {health.epoch})" + (" and is the default." if make_default else "."),
                     {**spec.public(), "default": deps.registry.default,
                      "epoch": health.epoch, "reachable": True})


async def _connect_tab(ctx: BridgeContext, name: str, previous: RuntimeSpec | None,
                       make_default: bool, wait: float | None) -> CallToolResult:
    """A Colab tab: start its relay (kept when the name already is one), open its link,
    wait for the page with progress; not connected yet is an answer with the link."""
    deps = deps_of(ctx)
    if previous is None or previous.kind != "colab-tab":
        await deps.registry.connect(name, COLAB_DOMAIN, None, kind="colab-tab",
                                    make_default=make_default,
                                    description="a Colab notebook open in a browser tab")
    elif make_default:
        deps.registry.default = name
    _, client = await deps.registry.client(name)
    started = time.monotonic()

    async def progress(waited: float, message: str) -> None:
        await ctx.report_progress(waited, message=message)

    wait_s = min(TAB_WAIT_S, deps.settings.wait_budget_s if wait is None else wait)
    attachment = await client.attach(wait_s=wait_s, progress=progress)
    info = {"name": name, "kind": "colab-tab", "link": attachment.link,
            "connected": attachment.ready, "default": deps.registry.default}
    if not attachment.ready:
        return _text(attachment.message, info)
    health = await client.health()
    waited = time.monotonic() - started
    return _text(f"runtime {name!r} is the Colab tab at {attachment.link}, connected "
                 f"(epoch {health.epoch}, {waited:.0f} s)"
                 + (" and is the default." if deps.registry.default == name else ".")
                 + " Code runs in visible cells of that notebook.",
                 {**info, "epoch": health.epoch})


async def release_runtime(
    ctx: BridgeContext,
    runtime: Annotated[str, Field(description="A runtime of kind 'colab'.")],
) -> CallToolResult:
    """Give a Colab-assigned runtime back now (frees GPU and quota). All on it not on
    Drive or downloaded is lost; the next call assigns a fresh one."""
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
    ToolDef(check_colab_connection, None, READS_REMOTE),
    ToolDef(probe_colab_environment, None, READS_REMOTE),
    ToolDef(list_colab_variables, None, READS_REMOTE),
    ToolDef(cleanup_colab, None, RUNS),
    ToolDef(restart_colab_runtime, None, RUNS),
    ToolDef(list_runtimes, None, READS_LOCAL),
    ToolDef(connect_runtime, None, ADDS),
    ToolDef(release_runtime, None, REPLACES_REMOTE),
]
