"""Job output: head+tail capping, the per-job spill file, text from rich outputs.

Memory stays bounded whatever a job prints: the full text goes to a spill file as
it arrives (the cursor of a long-poll is a byte offset in that file) and memory
holds only a head and a tail of each stream.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any, BinaryIO, Literal

from smartcolab.shared.output.display import choose, image_extension
from smartcolab.shared.output.flow import FlowRecord
from smartcolab.shared.output.terminal import strip_ansi
from smartcolab.shared.protocol import ErrorInfo, OutputAttachment, RichOutput, TextBlock

OMITTED_MARK = "\n... [{omitted} bytes omitted; page the full output with GET /jobs/{{id}}/output] ...\n"
def _utf8_cut_end(data: bytes | bytearray, n: int) -> int:
    """Largest index <= n that does not split a UTF-8 character."""
    n = min(n, len(data))
    while 0 < n < len(data) and (data[n] & 0xC0) == 0x80:
        n -= 1
    return n


def _complete_prefix(data: bytes | bytearray) -> int:
    """Length of ``data`` without a trailing, incomplete UTF-8 character."""
    i = len(data)
    j = i - 1
    while j >= 0 and i - j < 4 and (data[j] & 0xC0) == 0x80:
        j -= 1
    if j < 0:
        return i
    lead = data[j]
    need = 1 if lead < 0x80 else 2 if lead >> 5 == 6 else 3 if lead >> 4 == 0xE else 4
    return i if i - j >= need else j


def _utf8_cut_start(data: bytes | bytearray, n: int) -> int:
    """Smallest index >= n that does not split a UTF-8 character."""
    while n < len(data) and (data[n] & 0xC0) == 0x80:
        n += 1
    return n


def omitted_marker(omitted: int) -> str:
    return OMITTED_MARK.format(omitted=omitted)


def cap_head_tail(text: str, limit_bytes: int) -> tuple[str, bool]:
    """Keep at most about ``limit_bytes`` of UTF-8: the first and last halves.

    Returns ``(text, truncated)``; a truncated text carries a marker line saying
    how many bytes were left out.  Characters are never split.
    """
    data = text.encode("utf-8")
    if len(data) <= limit_bytes:
        return text, False
    half = max(0, limit_bytes // 2)
    head_end = _utf8_cut_end(data, half)
    tail_start = _utf8_cut_start(data, len(data) - half)
    omitted = tail_start - head_end
    joined = (data[:head_end].decode("utf-8") + omitted_marker(omitted)
              + data[tail_start:].decode("utf-8"))
    return joined, True


class HeadTail:
    """Accumulates a stream keeping only its first and last ``limit_bytes // 2`` bytes."""

    def __init__(self, limit_bytes: int) -> None:
        self.half = max(0, limit_bytes // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total_bytes = 0
        self.total_chars = 0
        self._head_open = True

    def append(self, text: str) -> None:
        if not text:
            return
        data = text.encode("utf-8")
        self.total_bytes += len(data)
        self.total_chars += len(text)
        if self._head_open:
            cut = _utf8_cut_end(data, self.half - len(self.head))
            self.head += data[:cut]
            data = data[cut:]
            if not data:
                return
            # Once anything overflows, the head is closed: it must stay a prefix.
            self._head_open = False
        self.tail += data
        if len(self.tail) > 2 * self.half:
            # Trim in bulk so repeated small appends stay amortised O(1).
            del self.tail[: len(self.tail) - self.half]

    def _kept_tail(self) -> bytes:
        # Bulk trimming in append() may leave a split character at the tail's start:
        # skip it here, so the omitted count covers every byte that is not shown.
        tail = bytes(self.tail)
        return tail[_utf8_cut_start(tail, max(0, len(tail) - self.half)):]

    @property
    def truncated(self) -> bool:
        return self.total_bytes > len(self.head) + len(self._kept_tail())

    def text(self) -> str:
        tail = self._kept_tail()
        kept = len(self.head) + len(tail)
        middle = omitted_marker(self.total_bytes - kept) if self.total_bytes > kept else ""
        return self.head.decode("utf-8", "ignore") + middle + tail.decode("utf-8", "ignore")

    def block(self) -> TextBlock:
        return TextBlock(text=self.text(), total_chars=self.total_chars, truncated=self.truncated)


# A job's output up to this size is also kept in memory: its views are answered without
# opening the file (the answer of a short job waited for an open, a read and a close).
MEMO_BYTES = 16 * 1024


class SpillFile:
    """Append-only full output of one job; created on the first write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Known once the file is open (or asked for): a new job's submission does not
        # wait for a stat of a file that is not there yet.
        self._size: int | None = None
        self._fh: BinaryIO | None = None
        # The whole file while it is small and this object wrote all of it; else None.
        self._memo: bytearray | None = None
        self._memo_possible = True

    @property
    def size(self) -> int:
        if self._size is None:
            try:
                self._size = self.path.stat().st_size
            except FileNotFoundError:
                self._size = 0
        return self._size

    def prepare(self) -> None:
        """Create the file (and the job's folder) now, before the first output needs it:
        called while the kernel takes a job's request in, so that a short job's first
        output does not wait for a mkdir and an open."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 - closed by close()
            if self._size is None:
                self._size = self._fh.tell()  # append mode: at the end already
            if self._memo is None and self._memo_possible:
                if self._size == 0:
                    self._memo = bytearray()
                self._memo_possible = False  # a file with bytes of before is read from disk

    @property
    def memo(self) -> bytes | bytearray | None:
        """The file's whole content when it is held in memory (small, written here)."""
        if self._memo is not None and len(self._memo) == self._size:
            return self._memo
        return None

    def write(self, text: str) -> None:
        if not text:
            return
        self.prepare()
        assert self._fh is not None
        data = text.encode("utf-8")
        self._fh.write(data)
        # Readers (long-polls, paging) open the file themselves: make bytes visible now.
        self._fh.flush()
        self._size = self.size + len(data)
        if self._memo is not None:
            if self._size <= MEMO_BYTES:
                self._memo += data
            else:
                self._memo = None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_range(path: Path, start: int, end: int) -> bytes:
    if end <= start or not path.exists():
        return b""
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(end - start)


def read_capped(path: Path, start: int, end: int, limit_bytes: int,
                memo: bytes | bytearray | None = None) -> tuple[str, bool]:
    """Text of bytes ``[start, end)`` of a spill file, head+tail capped; never reads it all.

    ``memo``: the file's content when held in memory (``SpillFile.memo``), read instead.
    """
    def read(a: int, b: int) -> bytes:
        if memo is not None and b <= len(memo):
            return bytes(memo[a:b])
        return read_range(path, a, b)

    if end - start <= limit_bytes:
        return read(start, end).decode("utf-8", "replace"), False
    half = limit_bytes // 2
    head = read(start, start + half)
    tail = read(end - half, end)
    head = head[:_complete_prefix(head)]
    tail = tail[_utf8_cut_start(tail, 0):]
    omitted = (end - start) - len(head) - len(tail)
    text = head.decode("utf-8", "replace") + omitted_marker(omitted) + tail.decode("utf-8", "replace")
    return text, True


def read_page(path: Path, offset: int, limit: int, total: int) -> tuple[str, int]:
    """One page of the spill file: ``(text, next_offset)``; never ends mid-character."""
    data = read_range(path, offset, min(total, offset + limit))
    end = len(data)
    if offset + end < total:
        end = _complete_prefix(data)
        if end == 0 and data:  # a page smaller than one character: return that character
            data = read_range(path, offset, min(total, offset + 4))
            end = _utf8_cut_start(data, 1)
    return data[:end].decode("utf-8", "replace"), offset + end


MAX_TRACEBACK_FRAMES = 40
MAX_FRAME_CHARS = 4000
MAX_TEXT_OUTPUTS = 50
MAX_SAVED_IMAGES = 100


def _cap_traceback(frames: list[str]) -> list[str]:
    frames = [strip_ansi(f)[:MAX_FRAME_CHARS] for f in frames]
    if len(frames) > MAX_TRACEBACK_FRAMES:
        omitted = len(frames) - MAX_TRACEBACK_FRAMES
        frames = [*frames[:10], f"... {omitted} frames omitted ...", *frames[-(MAX_TRACEBACK_FRAMES - 10):]]
    return frames


class JobOutput:
    """Collects one job's kernel messages: spill file, head+tail streams, rich outputs."""

    def __init__(self, job_dir: Path, *, text_limit: int, max_images: int,
                 max_image_bytes: int) -> None:
        self.job_dir = job_dir
        self.spill = SpillFile(job_dir / "output.txt")
        self.text_limit = text_limit
        self.max_images = max_images
        self.max_image_bytes = max_image_bytes
        self.stdout = HeadTail(text_limit)
        self.stderr = HeadTail(text_limit)
        self.outputs: list[RichOutput] = []
        # Everything above in the order it happened, positioned in the spill file.
        self.flow = FlowRecord(text_limit)
        # Set once the job has ended: what still comes is a thread's (``Job.on_late``).
        self.after_end = False
        self.error: ErrorInfo | None = None
        self.notes: list[str] = []
        self._images_seen = 0
        self._texts_dropped = 0
        self._files_kept = 0

    def handle(self, msg_type: str, content: dict[str, Any]) -> None:
        """Take one iopub message (``stream``, ``execute_result``, ``display_data``, ``error``)."""
        if msg_type == "stream":
            text = str(content.get("text", ""))
            err = content.get("name") == "stderr"
            (self.stderr if err else self.stdout).append(text)
            at = self.spill.size
            self.spill.write(text)
            self.flow.add("stderr" if err else "stdout", text, at=at, end=self.spill.size,
                          after_end=self.after_end)
        elif msg_type in ("execute_result", "display_data", "update_display_data"):
            self._rich("execute_result" if msg_type == "execute_result" else "display_data",
                       content)
        elif msg_type == "error":
            tb = _cap_traceback([str(f) for f in content.get("traceback", [])])
            self.error = ErrorInfo(ename=str(content.get("ename", "Error")),
                                   evalue=str(content.get("evalue", "")), traceback=tb)
            at = self.spill.size
            self.spill.write("\n".join(tb) + "\n")
            # The error's text is in ``error``: the record only marks where it happened.
            self.flow.add("error", "", at=at, end=self.spill.size, after_end=self.after_end)

    def _rich(self, kind: Literal["execute_result", "display_data"],
              content: dict[str, Any]) -> None:
        shown = choose(content.get("data") or {})
        count = content.get("execution_count") if kind == "execute_result" else None
        out = RichOutput(type=kind, execution_count=count if isinstance(count, int) else None)
        at = self.spill.size
        if shown.text:
            self.spill.write(shown.text if shown.text.endswith("\n") else shown.text + "\n")
            out.text = cap_head_tail(shown.text, self.text_limit)[0]
            out.text_mime = shown.text_mime
        if shown.image_base64 is not None and shown.image_mime is not None:
            self._image(out, shown.image_mime, shown.image_base64)
        for extra in shown.attachments:
            self._attach(out, extra.mime, extra.data, extra.extension)
        if out.text is None and out.image_mime is None and not out.attachments:
            return
        if out.image_base64 is None and not out.attachments and len(self.outputs) >= MAX_TEXT_OUTPUTS:
            self._texts_dropped += 1
            self.flow.add("display", out.text or "", at=at, end=self.spill.size,
                          after_end=self.after_end)
            return
        self.flow.add("result" if kind == "execute_result" else "display", out.text or "",
                      at=at, end=self.spill.size, output=len(self.outputs),
                      after_end=self.after_end)
        self.outputs.append(out)

    def _keep(self, data: bytes, extension: str) -> str | None:
        """Save one output's bytes in the job's folder; the file's name, or None past the cap."""
        self._files_kept += 1
        if self._files_kept > MAX_SAVED_IMAGES:
            return None
        name = f"output-{self._files_kept:03d}.{extension}"
        self.job_dir.mkdir(parents=True, exist_ok=True)
        (self.job_dir / name).write_bytes(data)
        return name

    def _image(self, out: RichOutput, mime: str, b64: str) -> None:
        self._images_seen += 1
        try:
            data = base64.b64decode(b64, validate=False)
        except (ValueError, binascii.Error):
            self.notes.append(f"an {mime} output was not valid base64 and was dropped")
            return
        out.image_mime, out.image_bytes = mime, len(data)
        kept_as = out.image_kept_as = self._keep(data, image_extension(mime))
        returned = sum(1 for o in self.outputs if o.image_base64)
        where = f" (kept on the runtime as {kept_as} in the job's folder)" if kept_as else ""
        if len(data) > self.max_image_bytes:
            self.notes.append(f"image {self._images_seen} ({len(data)} bytes) is over the "
                              f"{self.max_image_bytes}-byte limit: not returned{where}")
        elif returned >= self.max_images:
            self.notes.append(f"image {self._images_seen} not returned: at most "
                              f"{self.max_images} images per result{where}")
        else:
            out.image_base64 = b64

    def _attach(self, out: RichOutput, mime: str, data: str, extension: str) -> None:
        size = len(data.encode("utf-8"))
        kept_as = self._keep(data.encode("utf-8"), extension)
        over = size > self.max_image_bytes
        out.attachments.append(OutputAttachment(mime=mime, size=size, data=None if over else data,
                                                kept_as=kept_as))
        if over:
            self.notes.append(f"a {mime} output ({size} bytes) is over the "
                              f"{self.max_image_bytes}-byte limit: kept on the runtime only")

    def finish(self) -> None:
        if self._texts_dropped:
            self.notes.append(f"{self._texts_dropped} further text outputs are only in the full "
                              "output (GET /jobs/{id}/output)")
        self.spill.close()
