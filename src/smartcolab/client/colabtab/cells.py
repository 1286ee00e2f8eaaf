"""The cells the bridge writes into the user's notebook, and the answers it reads back.

Three kinds, each saying on its first line what it is (the user sees them all):

* the **setup cell** installs the thread-mode job agent (``kernelside/tab/agent.py``) in
  the page's kernel: one line of compressed, base64 source, its sha256 on the first line;
* a **job cell**: ``%%smartcolab_job JOB_ID --timeout S``, then the user's code exactly as
  written; the agent starts it in a kernel thread and the cell returns at once;
* the **control cell**: rewritten for each request, it asks the agent and prints one answer
  between markers carrying a fresh nonce (``answer``).

Everything read back from the page is untrusted: answers are size-capped, must be JSON
objects, and must carry the nonce of the request they answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import zlib
from typing import Any

from smartcolab.kernelside.tab.agent import MAGIC, NAME
from smartcolab.shared import kernel_code as kc
from smartcolab.shared.errors import RuntimeMisbehaved

SETUP_FIRST = "# smartcolab setup: installs the job agent in this kernel (sha256 {digest})"
CONTROL_FIRST = ("# smartcolab control cell: the bridge asks the job agent here "
                 "(it rewrites this cell; please leave it)")
JOB_FIRST = f"%%{MAGIC}"
GRACE_S = 5.0  # a job past its deadline or cancelled gets this long to stop before a restart
REPEAT_S = 0.5
WATCHDOG_MARGIN_S = 3.0
CALLS = ("probe", "variables", "cleanup", "tab.files")
ROOT = "/tmp/smartcolab-jobs"  # on the kernel's machine; outside /content, Colab's file panel
MAX_ANSWER_CHARS = 8 * 1024 * 1024
_AGENT = f"__import__('builtins').__dict__.get({NAME!r})"


def setup_cell(root: str | None = None) -> str:
    """The visible setup cell: the agent's install call, compressed."""
    calls = {m: [list(p) for p in kc.bundle(m)] for m in CALLS}
    program = kc.call("tab.agent", "install", {
        "root": root or ROOT, "grace_s": GRACE_S, "repeat_s": REPEAT_S,
        "margin_s": WATCHDOG_MARGIN_S, "calls": calls,
        "watchdog_source": kc.source("tab.watchdog")})
    packed = base64.b64encode(zlib.compress(program.encode("utf-8"), 9)).decode("ascii")
    digest = hashlib.sha256(program.encode("utf-8")).hexdigest()[:16]
    return (SETUP_FIRST.format(digest=digest) + "\n"
            f"import base64 as _b, zlib as _z; exec(_z.decompress(_b.b64decode('{packed}'))"
            ".decode()); del _b, _z")


def job_cell(job_id: str, code: str, timeout: float | None, session: str = "main") -> str:
    """A job's cell: the magic line naming the job, then the code exactly as given."""
    limit = "none" if timeout is None else f"{timeout:g}"
    return f"{JOB_FIRST} {job_id} --timeout {limit} --session {session}\n{code}"


def control_cell(request: dict[str, Any]) -> tuple[str, str]:
    """The control cell for ``request`` and the nonce its answer must carry."""
    nonce = secrets.token_hex(8)
    body = json.dumps(request)
    missing = json.dumps({"agent": None})
    code = (f"{CONTROL_FIRST}\n"
            f"({_AGENT}.control({body!r}, {nonce!r}) if {_AGENT} is not None else "
            f"print('[smartcolab {nonce}]' + {missing!r} + '[/smartcolab {nonce}]'))")
    return code, nonce


def answer(text: str, nonce: str) -> dict[str, Any]:
    """The answer carrying ``nonce`` in a control cell's output (untrusted)."""
    if len(text) > MAX_ANSWER_CHARS:
        raise RuntimeMisbehaved(f"the control cell printed {len(text):,} characters, over the "
                                f"{MAX_ANSWER_CHARS:,} accepted; its answer was ignored")
    found = re.search(rf"\[smartcolab {re.escape(nonce)}\](.*?)\[/smartcolab {re.escape(nonce)}\]",
                      text, re.DOTALL)
    if found is None:
        raise RuntimeMisbehaved("the control cell gave no answer (was it edited, or did the "
                                "kernel restart while it ran?); its output was: "
                                + text[-300:], details={"field": "control"})
    try:
        data = json.loads(found.group(1))
    except ValueError as exc:
        raise RuntimeMisbehaved(f"the control cell's answer is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RuntimeMisbehaved("the control cell's answer is not a JSON object")
    return data
