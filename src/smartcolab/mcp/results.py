"""Turn job views into results that fit a model's context: capped text, a few images.

Text is capped head + tail with the total size and the ``get_job_output`` call
that shows the rest; image outputs (PNG, JPEG, GIF, WebP) become MCP image content (``max_images`` per
result, larger ones downscaled when Pillow is present, otherwise saved under
``save_dir`` with a note); a failed job is ``isError`` with the exception, the
last traceback frames and the output printed before it.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent

from smartcolab.client.backend import RuntimeBackend
from smartcolab.client.local_files import local_target
from smartcolab.client.untrusted import check_job_id
from smartcolab.mcp.ordered import ordered_text
from smartcolab.mcp.tool_errors import for_model
from smartcolab.shared.errors import SmartColabError
from smartcolab.shared.output.display import Attachment, image_extension
from smartcolab.shared.output.terminal import render, strip_ansi
from smartcolab.shared.protocol import TERMINAL_STATUSES, JobResult, JobView, RichOutput

log = logging.getLogger(__name__)

TRACEBACK_FRAMES = 3


def cap_text(text: str, limit: int) -> tuple[str, bool]:
    """Keep the head and tail of ``text`` within ``limit`` characters."""
    if len(text) <= limit:
        return text, False
    head = limit * 2 // 5
    tail = limit - head - 80
    omitted = len(text) - head - tail
    return (f"{text[:head]}\n... [{omitted:,} characters omitted] ...\n{text[-tail:]}", True)


# The runtime's own head+tail marker (runtime/engine/output.py); its hint names an HTTP
# endpoint, so the bridge words it again for a model.
_RUNTIME_MARK = re.compile(r"\n\.\.\. \[(\d+) bytes omitted[^\]\n]*\] \.\.\.\n")


def _mark(omitted_bytes: int) -> str:
    return f"\n... [{omitted_bytes:,} bytes of output omitted: see get_job_output] ...\n"


def cap_output(text: str, limit: int, total_bytes: int) -> tuple[str, bool]:
    """Cap a job's output text head + tail within about ``limit`` characters.

    ``text`` may already be cut by the runtime (its markers say how many bytes);
    ``total_bytes`` is the size of the whole output. A marker counts what the result
    really leaves out: every byte of the output not shown, not just what this cut
    removed from an already shortened text.
    """
    text = _RUNTIME_MARK.sub(lambda m: _mark(int(m.group(1))), text)
    marks = [(m.start(), m.end()) for m in _MARK.finditer(text)]
    if len(text) <= limit:
        return text, bool(marks)
    head_end = limit * 2 // 5
    tail_start = len(text) - (limit - head_end - 90)
    for start, end in marks:  # never keep half a marker
        if start < head_end < end:
            head_end = start
        if start < tail_start < end:
            tail_start = end
    head, middle, tail = text[:head_end], text[head_end:tail_start], text[tail_start:]
    cut = _output_bytes(middle)
    # Labels ("[stderr]", "Out[3]:") and collapsed progress frames make the two counts
    # differ a little; the larger never claims less than was left out.
    omitted = max(total_bytes - _output_bytes(head) - _output_bytes(tail), cut)
    return head + _mark(omitted) + tail, True


def _output_bytes(text: str) -> int:
    """Bytes of output ``text`` stands for: its own text plus what its markers count."""
    marked = sum(int(m.group(1).replace(",", "")) for m in _MARK.finditer(text))
    return len(_MARK.sub("", text).encode()) + marked


# Ours, and the gap marker of mcp/ordered.py: both count bytes of output not shown.
_MARK = re.compile(r"\n?\.\.\. \[([\d,]+) bytes of output (?:omitted: see get_job_output|"
                   r"left out here)\] \.\.\.\n")


def last_line(text: str) -> str | None:
    for line in reversed(render(text).splitlines()):
        if line.strip():
            return line.strip()[:200]
    return None


@dataclass
class Rendered:
    """What a tool returns: text, images and structured data, plus an error flag."""

    text: str
    images: list[ImageContent] = field(default_factory=list)
    structured: dict[str, Any] = field(default_factory=dict)
    is_error: bool = False

    def result(self) -> CallToolResult:
        content: list[ContentBlock] = [TextContent(type="text", text=self.text)]
        content.extend(self.images)
        return CallToolResult(content=content, structured_content=self.structured or None,
                              is_error=self.is_error)


@dataclass(frozen=True)
class RenderOptions:
    max_chars: int
    max_images: int
    max_image_bytes: int
    save_dir: Path


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # the save dir itself: names have no '/'
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _downscale(png: bytes, max_bytes: int) -> bytes | None:
    """Shrink a PNG below ``max_bytes`` with Pillow, or None when Pillow is absent."""
    try:
        from PIL import Image as PILImage
    except ImportError:
        return None
    img = PILImage.open(io.BytesIO(png))
    scale = 1.0
    for _ in range(6):
        scale *= 0.7
        size = (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
        buf = io.BytesIO()
        img.resize(size).save(buf, format="PNG", optimize=True)
        if buf.tell() <= max_bytes:
            return buf.getvalue()
    return None


# Largest kept output the bridge fetches from a runtime to save here.
MAX_KEPT_FETCH_BYTES = 64 * 1024 * 1024


async def fetch_kept(client: RuntimeBackend, view: JobView) -> list[str]:
    """Bring outputs the runtime kept only in the job's folder (over its size cap) into
    the view, so that ``render_images`` downscales or saves them like any other; notes
    for those that could not be fetched."""
    res = view.result
    if res is None:
        return []
    notes: list[str] = []
    fetched: list[str] = []
    for out in res.outputs:
        wanted: list[tuple[str, int, Any]] = []
        if out.image_kept_as and out.image_base64 is None and out.image_mime:
            wanted.append((out.image_kept_as, out.image_bytes or 0, out))
        wanted += [(a.kept_as, a.size, a) for a in out.attachments
                   if a.kept_as and a.data is None]
        for name, size, target in wanted:
            if size > MAX_KEPT_FETCH_BYTES:
                notes.append(f"an output of {size:,} bytes is kept on the runtime only (over "
                             f"{MAX_KEPT_FETCH_BYTES:,} bytes): {name} in the folder of job "
                             f"{view.job_id}.")
                continue
            try:
                data = await client.job_file(view.job_id, name)
            except SmartColabError as exc:
                notes.append(f"an output of {size:,} bytes ({name}) could not be fetched "
                             f"from the runtime: {exc.message}")
                continue
            if data is None:
                continue
            if len(data) != size:  # the runtime stated the size it then sent: hold it to it
                notes.append(f"an output kept on the runtime ({name}) was refused: it sent "
                             f"{len(data):,} bytes where it stated {size:,}.")
                continue
            if isinstance(target, RichOutput):
                target.image_base64 = base64.b64encode(data).decode()
            else:
                target.data = data.decode("utf-8", "replace")
            fetched.append(name)
    if fetched and res.message:  # the runtime's "not returned ... kept as NAME" notes
        kept = [n for n in res.message.split("; ") if not any(f in n for f in fetched)]
        res.message = "; ".join(kept) or None
    return notes


def render_images(job_id: str, outputs: list[RichOutput], opts: RenderOptions
                  ) -> tuple[list[ImageContent], list[str]]:
    """Images for the result, and notes about the ones saved to disk instead."""
    images: list[ImageContent] = []
    notes: list[str] = []
    shown = [o for o in outputs if o.image_base64 and o.image_mime]
    for index, out in enumerate(shown, start=1):
        mime = out.image_mime or "image/png"
        data = base64.b64decode(out.image_base64 or "")
        if len(images) < opts.max_images:
            if len(data) > opts.max_image_bytes:
                small = _downscale(data, opts.max_image_bytes)
                if small is not None:
                    original = _save(opts.save_dir, job_id, f"image{index}.{image_extension(mime)}",
                                     data, "the original")
                    notes.append(f"image {index} was downscaled from {len(data):,} bytes to "
                                 f"{len(small):,} to fit; {original}")
                    images.append(ImageContent(type="image", mime_type="image/png",
                                               data=base64.b64encode(small).decode()))
                    continue
            else:
                images.append(ImageContent(type="image", mime_type=mime,
                                           data=out.image_base64 or ""))
                continue
        notes.append(_save(opts.save_dir, job_id, f"image{index}.{image_extension(mime)}",
                           data, f"image {index}"))
    for out in outputs:
        if out.image_mime and not out.image_base64 and out.image_bytes:
            where = f" as {out.image_kept_as} in the job's folder" if out.image_kept_as else ""
            notes.append(f"a {out.image_mime} image ({out.image_bytes:,} bytes) is kept on the "
                         f"runtime only{where}: this runtime kind could not send it.")
    attachments = [a for o in outputs for a in o.attachments]
    for index, extra in enumerate(attachments, start=1):
        if extra.data is None:
            notes.append(f"a {extra.mime} output ({extra.size:,} bytes) is kept on the runtime "
                         "only: it was over the runtime's size cap.")
            continue
        name = f"output{index}.{Attachment(extra.mime, '').extension}"
        notes.append(_save(opts.save_dir, job_id, name, extra.data.encode("utf-8"),
                           f"a {extra.mime} output"))
    return images, notes


def _save(save_dir: Path, job_id: str, suffix: str, data: bytes, what: str) -> str:
    """Write one output that is not shown; the note that says where it went.

    The job id came from the runtime: checked against the wire pattern, then the
    name is confined to the save directory like any local name.
    """
    try:
        path = local_target(save_dir, f"{check_job_id(job_id)}-{suffix}")
        _write_atomic(path, data)
        return f"{what} ({len(data):,} bytes) saved to {path}."
    except (OSError, SmartColabError) as exc:
        return f"{what} ({len(data):,} bytes) not shown and not saved: {exc}."


def short_traceback(lines: list[str]) -> str:
    """The last frames of an IPython traceback, colours stripped."""
    frames = [strip_ansi(f).rstrip() for f in lines if f.strip()]
    if len(frames) > TRACEBACK_FRAMES + 1:
        frames = ["... (earlier frames omitted)", *frames[-(TRACEBACK_FRAMES + 1):]]
    text = "\n".join(frames)
    return text[-6000:]


def _seconds(s: float | None) -> str:
    return f"{s:.1f} s" if s is not None and s < 10 else f"{s or 0:.0f} s"


def _grouped(res: JobResult) -> tuple[str, str | None, bool]:
    """stdout, stderr, display texts and the value, grouped (a result without ``flow``)."""
    pieces = []
    if res.stdout.text:
        pieces.append(res.stdout.text)
    if res.stderr.text:
        pieces.append(f"[stderr]\n{res.stderr.text}")
    value = next((o.text for o in res.outputs if o.type == "execute_result" and o.text), None)
    pieces.extend(o.text for o in res.outputs if o.text and o.text != value)
    if value is not None:
        pieces.append(f"Out[{res.execution_count or ''}]: {value}")
    return "\n".join(pieces), value, res.stdout.truncated or res.stderr.truncated


def render_job(view: JobView, *, runtime: str, opts: RenderOptions, running_output: str = "",
               notes: list[str] | None = None, waited_s: float | None = None,
               shown_before: int = 0) -> Rendered:
    """Render one job view as the result of a tool call.

    ``waited_s``: how long this call really waited (said when the job is still going);
    ``shown_before``: the client's cursor when the call began: output before it was
    returned to this client already and is left out (``get_job(from_start=true)`` is 0).
    """
    notes = list(notes or [])
    head = f"job {view.job_id} on runtime {runtime!r} (session {view.session}): {view.status}"
    if view.duration_s is not None:
        head += f" in {view.duration_s:.2f} s"
    parts = [head]
    images: list[ImageContent] = []
    res = view.result
    budget = max(200, opts.max_chars)
    truncated = False
    # Where the output is, its source and the bytes it stands for (to cap it again).
    body_at: tuple[int, str, int] | None = None
    structured: dict[str, Any] = {
        "job_id": view.job_id, "runtime": runtime, "session": view.session,
        "status": view.status, "duration_s": view.duration_s, "epoch": view.epoch,
        "output_bytes": view.output_bytes,
    }
    if view.status not in TERMINAL_STATUSES or res is None:
        text, truncated = cap_text(render(running_output), budget)
        if text:
            parts.append(f"output so far:\n{text}")
        if view.status not in TERMINAL_STATUSES:
            # Said only when this call really waited (background=true returns at once).
            waited = (f" after waiting {_seconds(waited_s)}"
                      if waited_s is not None and waited_s >= 0.05 else "")
            parts.append(
                f"The job is still {view.status}{waited}; it keeps running on the runtime. "
                f"Next: call get_job(job_id={view.job_id!r}) to wait for it and see new output, "
                f"or cancel_job(job_id={view.job_id!r}) to stop it.")
    else:
        seen_bytes = 0
        if res.flow:
            ordered = ordered_text(res, shown_before=shown_before)
            joined, value, truncated = ordered.text, ordered.value, ordered.gap
            seen_bytes = ordered.seen
            if ordered.seen:
                notes.append(f"{ordered.seen:,} bytes of output returned to you earlier are "
                             f"not repeated (get_job(job_id={view.job_id!r}, from_start=true) "
                             "repeats them).")
        else:  # a runtime without the ordered record: streams, then displays
            joined, value, truncated = _grouped(res)
        if value is not None:
            structured["value"] = value[:2000]
        source = render(joined)
        unseen_bytes = view.output_bytes - seen_bytes
        body, cut = cap_output(source, budget, unseen_bytes)
        truncated = truncated or cut
        if body:
            body_at = (len(parts), source, unseen_bytes)
            parts.append(body)
        if res.error is not None:
            parts.append(f"{res.error.ename}: {res.error.evalue}\n"
                         f"Traceback (last frames):\n{short_traceback(res.error.traceback)}")
            structured["error"] = {"ename": res.error.ename, "evalue": res.error.evalue}
        if res.message:
            parts.append(for_model(res.message))
        if res.state_lost:
            notes.append("The kernel was restarted or died during this job: variables from "
                         "earlier calls are gone; re-run your setup code.")
            structured["state_lost"] = True
        if res.resources is not None and res.resources.warnings:
            notes.extend(res.resources.warnings)
        images, image_notes = render_images(view.job_id, res.outputs, opts)
        notes.extend(image_notes)
        if view.status == "timed_out":
            parts.append(f"The job hit its timeout ({view.timeout} s) and was interrupted. "
                         "Use run_code_long with a larger timeout for slow work.")
    if truncated:
        parts.append(f"[output truncated: {view.output_bytes:,} bytes in all. Call "
                     f"get_job_output(job_id={view.job_id!r}, offset=0) to page through it.]")
        structured["truncated"] = True
    if notes:
        notes = [for_model(n) for n in notes]
        parts.append("Notes:\n" + "\n".join(f"- {n}" for n in notes))
        structured["notes"] = notes
    is_error = view.status in ("failed", "timed_out", "lost")
    over = len("\n\n".join(parts)) - opts.max_chars
    if over > 0 and body_at is not None:  # the whole result within the cap, not just the output
        index, source, unseen_bytes = body_at
        parts[index], _ = cap_output(source, max(200, len(parts[index]) - over - 100),
                                     unseen_bytes)
    return Rendered("\n\n".join(parts), images, structured, is_error)

