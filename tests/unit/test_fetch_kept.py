"""Outputs kept on the runtime are fetched only as the runtime stated them: a runtime that
sends more or fewer bytes than it declared gets its output refused, with a note."""

from __future__ import annotations

import base64

import pytest

from smartcolab.mcp.results import MAX_KEPT_FETCH_BYTES, fetch_kept
from smartcolab.shared.protocol import JobResult, JobView, OutputAttachment, RichOutput
from support.fake_backend import FakeBackend

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100


class KeepingBackend(FakeBackend):
    """A runtime whose kept files are whatever the test says, whatever size it stated."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__()
        self.files = files
        self.fetched: list[str] = []

    async def job_file(self, job_id: str, name: str) -> bytes | None:
        self.fetched.append(name)
        return self.files.get(name)


def view(image_bytes: int, attachment_size: int) -> JobView:
    out = RichOutput(type="display_data", image_mime="image/png", image_bytes=image_bytes,
                     image_kept_as="out-1.png",
                     attachments=[OutputAttachment(mime="image/svg+xml", size=attachment_size,
                                                   kept_as="out-1.svg")])
    result = JobResult(outputs=[out], message="image not returned, kept as out-1.png; "
                                              "image/svg+xml not returned, kept as out-1.svg")
    return JobView(job_id="j1", session="main", status="succeeded", code="plot()",
                   timeout=None, created_at=0.0, epoch="e", result=result)


async def test_kept_outputs_of_the_stated_size_are_brought_into_the_view() -> None:
    backend = KeepingBackend({"out-1.png": PNG, "out-1.svg": b"<svg/>"})
    v = view(len(PNG), 6)
    notes = await fetch_kept(backend, v)
    assert notes == []
    assert v.result is not None
    out = v.result.outputs[0]
    assert base64.b64decode(out.image_base64 or "") == PNG
    assert out.attachments[0].data == "<svg/>"
    assert v.result.message is None  # the "kept as" notes went with the fetched outputs


async def test_a_runtime_sending_other_than_it_stated_is_refused_with_a_note() -> None:
    backend = KeepingBackend({"out-1.png": PNG + b"extra", "out-1.svg": b"<s"})
    v = view(len(PNG), 6)
    notes = await fetch_kept(backend, v)
    assert v.result is not None
    out = v.result.outputs[0]
    assert out.image_base64 is None and out.attachments[0].data is None
    assert len(notes) == 2
    assert f"sent {len(PNG) + 5:,} bytes where it stated {len(PNG):,}" in notes[0]
    assert "sent 2 bytes where it stated 6" in notes[1]
    assert "kept as out-1.png" in (v.result.message or "")  # its note stays: still only there


async def test_an_output_stated_over_the_cap_is_not_fetched_at_all() -> None:
    backend = KeepingBackend({"out-1.png": PNG, "out-1.svg": b"<svg/>"})
    v = view(MAX_KEPT_FETCH_BYTES + 1, 6)
    notes = await fetch_kept(backend, v)
    assert backend.fetched == ["out-1.svg"]
    assert len(notes) == 1 and "kept on the runtime only" in notes[0]
