"""``smartcolab doctor``: check a runtime step by step and say exactly what is wrong.

Checks, in order, each building on the last: the URL is reachable; what answers is our
runtime and not a tunnel's page (ngrok's browser interstitial or its "tunnel not found"
error, Cloudflare's 52x/530 pages); the clock difference to the runtime's ``Date``
header is inside the signature window; a signed request is accepted (the secret);
the runtime's version matches ours; a kernel runs ``1+1``.
"""

from __future__ import annotations

import email.utils
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Literal

import httpx2
from rich.table import Table

from smartcolab import __version__
from smartcolab.cli import hints
from smartcolab.cli.common import Target, open_runtime, out, print_json
from smartcolab.client.http.client import NO_RETRY, RuntimeClient
from smartcolab.shared import routes
from smartcolab.shared.errors import RuntimeUnreachable, SmartColabError, Unauthorized
from smartcolab.shared.protocol import H_NGROK_SKIP, SIGNATURE_WINDOW_S, JobSubmit

Level = Literal["ok", "warn", "fail", "skip"]
SKEW_WARN_S = 30.0
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36"


@dataclass
class Check:
    name: str
    level: Level
    detail: str


@dataclass
class Report:
    url: str
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, level: Level, detail: str) -> None:
        self.checks.append(Check(name, level, detail))

    @property
    def ok(self) -> bool:
        return all(c.level != "fail" for c in self.checks)


def clock_skew(date_header: str | None, sent: float, received: float) -> float | None:
    """Runtime clock minus local clock, in seconds (``Date`` has 1 s resolution)."""
    if not date_header:
        return None
    try:
        remote = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return None
    # Date is truncated to the second: its true value lies in [remote, remote + 1).
    return remote + 0.5 - (sent + received) / 2


def tunnel_problem(response: httpx2.Response) -> str | None:
    """Recognise a tunnel's own page in place of the runtime's JSON answer."""
    ctype = response.headers.get("content-type", "")
    body = response.text[:20000] if "json" not in ctype else ""
    low = body.lower()
    if "ngrok" in low or response.headers.get("ngrok-error-code"):
        code = response.headers.get("ngrok-error-code") or next(
            (w for w in body.replace('"', " ").replace("<", " ").split() if w.startswith("ERR_NGROK_")),
            "")
        if code in ("ERR_NGROK_3200", "ERR_NGROK_8012") or "offline" in low or "not found" in low:
            return (f"ngrok says the tunnel is offline ({code or 'no code'}): the notebook or "
                    "server behind it stopped; re-run its serving cell and use the new URL")
        if code == "ERR_NGROK_6024" or "visit site" in low or "browser-warning" in low:
            return ("ngrok served its browser warning page: send the header "
                    f"'{H_NGROK_SKIP}: 1' (smartcolab's client always does)")
        return f"an ngrok page answered instead of the runtime ({code or 'HTTP ' + str(response.status_code)})"
    if "cloudflare" in low or response.status_code in (520, 521, 522, 523, 524, 530):
        return (f"Cloudflare answered HTTP {response.status_code} instead of the runtime: the "
                "tunnel has no server behind it (re-run the serving cell), or a response took "
                "over ~100 s")
    if "json" not in ctype:
        return (f"HTTP {response.status_code} with {ctype or 'no content type'}: this URL does "
                "not look like a smartcolab runtime")
    return None


async def _reachability(report: Report, http: httpx2.AsyncClient, url: str) -> httpx2.Response | None:
    samples: list[float] = []
    response: httpx2.Response | None = None
    try:
        for _ in range(3):
            sent = time.time()
            response = await http.get(url + routes.HEALTH, headers={H_NGROK_SKIP: "1"})
            samples.append(time.time() - sent)
    except httpx2.TransportError as exc:
        detail = f"cannot connect to {url}: {type(exc).__name__}: {exc}."
        if hints.tls_problem(str(exc)):
            report.add("reachable", "fail", f"{detail} {hints.TLS_HINT}")
        else:
            report.add("reachable", "fail", f"{detail} Is the server running, the URL current "
                       "(tunnel URLs change on restart)?")
        return None
    assert response is not None
    report.add("reachable", "ok", f"HTTP {response.status_code} from /health, median "
               f"{statistics.median(samples) * 1000:.0f} ms")
    problem = tunnel_problem(response)
    if problem or response.status_code != 200:
        report.add("runtime answers", "fail", problem or f"/health answered HTTP {response.status_code}")
        return None
    report.add("runtime answers", "ok", f"smartcolab {response.json().get('version', '?')}")
    try:  # browsers (and curl users forgetting the header) may meet an interstitial
        plain = await http.get(url + routes.HEALTH, headers={"User-Agent": BROWSER_UA})
        problem = tunnel_problem(plain)
        if problem:
            report.add("tunnel headers", "warn", f"without {H_NGROK_SKIP}: {problem}")
        else:
            report.add("tunnel headers", "ok", "no interstitial page in front of the runtime")
    except httpx2.TransportError:
        pass
    return response


def _clock(report: Report, response: httpx2.Response, sent: float, received: float) -> None:
    skew = clock_skew(response.headers.get("date"), sent, received)
    if skew is None:
        report.add("clock", "skip", "the runtime sent no Date header")
    elif abs(skew) > SIGNATURE_WINDOW_S:
        report.add("clock", "fail", f"the runtime's clock is {skew:+.0f} s off this machine's; "
                   f"signed requests are refused beyond ±{SIGNATURE_WINDOW_S:.0f} s: fix the "
                   "clock (e.g. enable NTP: timedatectl set-ntp true)")
    elif abs(skew) > SKEW_WARN_S:
        report.add("clock", "warn", f"clocks differ by {skew:+.0f} s (allowed ±{SIGNATURE_WINDOW_S:.0f} s)")
    else:
        report.add("clock", "ok", f"clocks agree within {max(1.0, abs(skew)):.0f} s")


async def _auth_and_kernel(report: Report, url: str, secret: str | None) -> None:
    if not secret:
        report.add("auth", "fail", "no secret given: pass --token-file or set COLAB_TOKEN (the "
                   "server printed it when it started)")
        return
    async with RuntimeClient(url, secret, retry=NO_RETRY) as client:
        try:
            probe = await client.probe()
        except Unauthorized as exc:
            report.add("auth", "fail", f"the runtime refused our signature: {exc.message}")
            return
        except SmartColabError as exc:
            report.add("auth", "fail", f"{exc.code}: {exc.message}")
            return
        except ValueError as exc:  # pydantic's ValidationError, bad JSON
            report.add("auth", "fail", "/probe did not answer like a smartcolab runtime "
                       f"({type(exc).__name__}): is the URL right?")
            return
        report.add("auth", "ok", "signed requests accepted")
        level: Level = "ok" if probe.version == __version__ else "warn"
        report.add("version", level, f"runtime {probe.version}, this client {__version__}")
        try:
            t0 = time.perf_counter()
            view = await client.submit(JobSubmit(job_id=f"doctor-{uuid.uuid4().hex[:16]}",
                                                 code="1+1", timeout=30), wait=30)
            took = (time.perf_counter() - t0) * 1000
        except SmartColabError as exc:
            report.add("kernel", "fail", f"{exc.code}: {exc.message}")
            return
        if view.status == "succeeded":
            report.add("kernel", "ok", f"1+1 ran in {took:.0f} ms ({probe.platform}, "
                       f"{probe.accelerator})")
        else:
            report.add("kernel", "fail", f"1+1 ended {view.status}: "
                       f"{view.result.message if view.result else ''}")


async def diagnose(url: str, secret: str | None) -> Report:
    """Run every check against ``url``; never raises for a failed check."""
    report = Report(url)
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(15.0, connect=10.0),
                                  follow_redirects=False) as http:
        sent = time.time()
        response = await _reachability(report, http, url)
        received = time.time()
        if response is None:
            return report
        # Use a fresh single request for the skew: three polls inflate the midpoint error.
        sent = time.time()
        response = await http.get(url + routes.HEALTH, headers={H_NGROK_SKIP: "1"})
        received = time.time()
        _clock(report, response, sent, received)
    await _auth_and_kernel(report, url, secret)
    return report


_MARK = {"ok": "[green]✓[/green]", "warn": "[yellow]![/yellow]", "fail": "[red]✗[/red]",
         "skip": "[dim]-[/dim]"}


async def doctor(target: Target, *, as_json: bool) -> bool:
    try:
        async with open_runtime(target) as (spec, _client):
            report = await diagnose(spec.url, spec.secret)
    except RuntimeUnreachable as exc:  # the embedded runtime could not start
        report = Report(target.url or target.runtime or "local")
        report.add("reachable", "fail", exc.message)
    if as_json:
        print_json({"url": report.url, "ok": report.ok,
                    "checks": [asdict(c) for c in report.checks]})
        return report.ok
    table = Table(title=f"smartcolab doctor: {report.url}")
    for col in ("", "check", "result"):
        table.add_column(col)
    for c in report.checks:
        table.add_row(_MARK[c.level], c.name, c.detail)
    out.print(table)
    first = next((c for c in report.checks if c.level == "fail"), None)
    out.print("[green]all checks passed[/green]" if first is None
              else f"[red]problem:[/red] {first.name}: {first.detail}")
    return report.ok
