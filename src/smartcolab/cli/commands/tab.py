"""``smartcolab tab open NAME``: connect a Colab tab from a terminal, and optionally run code in it.

The relay lives as long as this command: it prints the link (and opens it unless
``--no-browser`` or ``$SMARTCOLAB_NO_BROWSER``), waits for the page with progress, shows
what the tab's kernel runs on, runs ``--exec`` code as a visible job cell (our deadline
applies), and with ``--stay`` keeps the tab connected until Ctrl-C.  For an MCP client the
same happens inside the bridge: ``connect_runtime(kind="colab-tab", name=NAME)``.
"""

from __future__ import annotations

import os
import time
import webbrowser
from typing import Annotated

import anyio
import typer

from smartcolab.cli.common import err, out, run
from smartcolab.shared import env as env_names

tab_app = typer.Typer(help="The user's open Colab notebook as a runtime (kind colab-tab).",
                      no_args_is_help=True)


@tab_app.command("open")
def open_tab(
    name: Annotated[str, typer.Argument(help="A name for this tab (several tabs: several names).")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the tab to connect.")] = 120.0,
    exec_code: Annotated[str | None, typer.Option(
        "--exec", help="Code to run in the tab once connected (a visible job cell).")] = None,
    timeout: Annotated[float, typer.Option(help="The job's deadline in seconds.")] = 120.0,
    no_browser: Annotated[bool, typer.Option(
        "--no-browser", help="Print the link only (also $SMARTCOLAB_NO_BROWSER).")] = False,
    stay: Annotated[bool, typer.Option(help="Keep the tab connected until Ctrl-C.")] = False,
) -> None:
    """Print the link that connects a Colab tab, wait for it, and optionally run code in it.

    Example: smartcolab tab open nb --exec "import torch; print(torch.cuda.is_available())"
    """
    from smartcolab.client.colabtab.backend import TabBackend
    from smartcolab.client.follow import new_job_id
    from smartcolab.client.registry import check_name
    from smartcolab.shared.errors import RuntimeUnreachable
    from smartcolab.shared.protocol import TERMINAL_STATUSES, JobSubmit

    browser = not (no_browser or os.environ.get(env_names.NO_BROWSER))

    async def body() -> None:
        backend = TabBackend(check_name(name), opener=webbrowser.open if browser else None)
        try:
            await backend.relay.start()
            err.print(f"Open this link in the browser where you use Colab:\n{backend.relay.link}")

            async def progress(waited: float, _message: str) -> None:
                err.print(f"waiting for the tab ... {waited:.0f} s", end="\r")

            attached = await backend.attach(wait_s=wait, progress=progress)
            if not attached.ready:
                raise RuntimeUnreachable(attached.message)
            probe = await backend.probe()
            err.print(f"\nconnected: {probe.platform}, Python {probe.python}, "
                      f"{probe.cpu_count} CPUs, GPUs: "
                      + (", ".join(g.name for g in probe.gpus) or "none"))
            if exec_code is not None:
                view = await backend.submit(JobSubmit(job_id=new_job_id(), code=exec_code,
                                                      timeout=timeout), wait=5.0)
                out.print(view.output, end="", markup=False)
                while view.status not in TERMINAL_STATUSES:
                    view = await backend.get_job(view.job_id, wait=5.0, since=view.cursor)
                    out.print(view.output, end="", markup=False)
                result = view.result
                if result is not None:
                    for item in result.outputs:
                        if item.type == "execute_result" and item.text:
                            out.print(item.text, markup=False)
                    if result.error is not None:
                        err.print(f"{result.error.ename}: {result.error.evalue}", markup=False)
                    if result.message:
                        err.print(result.message, markup=False)
                err.print(f"job {view.job_id}: {view.status}")
                if view.status != "succeeded":
                    raise typer.Exit(1)
            while stay:
                await anyio.sleep(1.0)
                if backend.relay.page is None and not backend.relay.connecting:
                    err.print(f"the tab went away at {time.strftime('%H:%M:%S')}; "
                              f"reopen {backend.relay.link}")
                    await backend.relay.wait_page(3600)
        finally:
            await backend.aclose()

    run(body)
