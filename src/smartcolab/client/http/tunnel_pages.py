"""What a tunnel's own answer means: its error pages and web pages in place of our JSON.

A runtime behind ngrok or Cloudflare is reached through the tunnel's edge, which answers
for it when it cannot: an HTML page with the edge's status (ngrok's offline endpoint is a
404, Cloudflare's timeout a 524, a tunnel with no ``cloudflared`` connected a 530).  Our
runtime always answers JSON, so an answer that is not JSON came from something else; this
module turns such an answer into an error that says what happened and what to do, each
with a stable code (``shared/errors.py``).  The page itself never reaches the message.
"""

from __future__ import annotations

import re

import httpx2

from smartcolab.shared.errors import (
    NotARuntime,
    RuntimeNotAnswering,
    RuntimeUnreachable,
    TunnelDown,
)

# Statuses a tunnel's edge uses when the runtime behind it fails it: bad gateway,
# unavailable, gateway timeout, and Cloudflare's 52x family (origin errors and timeouts).
_EDGE_STATUSES = frozenset({502, 503, 504, 520, 521, 522, 523, 524, 525, 526, 527})
_NGROK_CODE = re.compile(rb"ERR_NGROK_(\d{1,5})")
# ngrok: the endpoint has no agent (3200) or the agent session ended (3004, 3084).
_NGROK_OFFLINE = frozenset({"3200", "3004", "3084"})
# Cloudflare 530 with error 1033: the tunnel exists but no cloudflared is connected.
_CLOUDFLARE_1033 = re.compile(rb"\b1033\b")
_SNIFF_BYTES = 64 * 1024

_RERUN = ("Re-run the notebook's serving cell (it opens the tunnel) and take the new URL "
          "it prints: call connect_runtime with it (or `smartcolab runtimes add`).")


def _is_json(response: httpx2.Response) -> bool:
    kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        return True
    if kind:
        return False
    return response.content[:1].lstrip()[:1] in (b"{", b"[")


def tunnel_error(url: str, response: httpx2.Response) -> RuntimeUnreachable | None:
    """The error for a tunnel's own error page, or ``None`` when the answer is the runtime's
    (or a page nothing here recognises, which then counts by its status alone)."""
    if response.status_code < 400 or _is_json(response):
        return None
    status = response.status_code
    head = response.content[:_SNIFF_BYTES]
    ngrok = _NGROK_CODE.search(head)
    ngrok_code = ngrok.group(1).decode() if ngrok else None
    details: dict[str, object] = {"url": url, "status": status}
    if ngrok_code:
        details["tunnel_error"] = f"ERR_NGROK_{ngrok_code}"
    if ngrok_code in _NGROK_OFFLINE or (status == 530 and _CLOUDFLARE_1033.search(head)):
        return TunnelDown(
            f"the tunnel in front of {url} is down (HTTP {status}"
            f"{', ERR_NGROK_' + ngrok_code if ngrok_code else ', Cloudflare error 1033'}): "
            f"its endpoint is offline, so the runtime is not reachable at this URL. {_RERUN}",
            details=details)
    if status in _EDGE_STATUSES or status == 530 or ngrok_code:
        what = ("timed out waiting for the runtime" if status in (504, 522, 524)
                else "could not get an answer from the runtime")
        return RuntimeNotAnswering(
            f"the tunnel in front of {url} answered HTTP {status}: it {what}, so the runtime "
            "behind it is not answering (busy past the tunnel's timeout, stopped, or the "
            "notebook disconnected). Re-run the notebook's serving cell, then retry; "
            "if the URL changed, call connect_runtime with the new one.", details=details)
    return None


def not_a_runtime(url: str, response: httpx2.Response) -> NotARuntime:
    """A success whose body is not our JSON: a web page (ngrok's browser warning, a login
    page) or another service answered in the runtime's place."""
    kind = response.headers.get("content-type", "").split(";", 1)[0].strip() or "no type"
    return NotARuntime(
        f"{url} answered HTTP {response.status_code} with {kind} instead of the runtime's "
        "JSON: the URL does not reach a smartcolab runtime (a tunnel's warning or login page, "
        f"or another service answers there). Check the URL. {_RERUN}",
        details={"url": url, "status": response.status_code, "content_type": kind[:80]})
