"""Parallel ranged downloads (client/transfer/: spans, span_streams, parallel): a real
runtime on loopback for what must work, cut connections for resume, and a fake span source
for answers that must be refused."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from smartcolab.client.http import transfer
from smartcolab.client.http.client import RetryPolicy, RuntimeClient
from smartcolab.client.transfer import parallel, publish, span_streams, spans
from smartcolab.client.transfer.publish import verify_and_publish
from smartcolab.client.transfer.resumable import fetch
from smartcolab.client.transfer.source import RangeReply, SpanSource
from smartcolab.shared.errors import (
    ChecksumMismatch,
    InvalidInput,
    LocalWriteFailed,
    RuntimeMisbehaved,
    RuntimeUnreachable,
)
from support.cutproxy import CutProxy
from support.runtime_proc import RuntimeProc, start_runtime

pytestmark = pytest.mark.anyio
KB = 1024
FAST = RetryPolicy(attempts=3, initial_s=0.02, max_s=0.1, total_s=10)
DATA = os.urandom(3 * 1024 * KB + 7)  # not a multiple of the span size
SPAN = 256 * KB


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    proc = start_runtime(Path(tmp_path_factory.mktemp("spans")) / "root")
    (proc.root / "big.bin").write_bytes(DATA)
    try:
        yield proc
    finally:
        proc.stop()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def client_for(proc: RuntimeProc, url: str | None = None) -> RuntimeClient:
    return RuntimeClient(url or proc.url, proc.secret, retry=FAST)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_parallel_download_is_verified_and_uses_several_streams(
        runtime: RuntimeProc, tmp_path: Path) -> None:
    seen: list[int] = []
    with CutProxy(runtime.port, cuts=0) as proxy:
        async with client_for(runtime, proxy.url) as c:
            with anyio.fail_after(60):
                res = await transfer.download(c, "big.bin", tmp_path, streams=4, min_span=SPAN,
                                              progress=lambda d, t: seen.append(d))
        assert proxy.connections >= 3  # the sha256 stat + more than one stream
    assert res.sha256 == sha(DATA) and res.path.read_bytes() == DATA
    # The first span (2 x min_span, asked before the size was known), then the rest
    # cut for 4 streams.
    assert res.attempts == 5 and res.wire_bytes == len(DATA)
    assert seen and seen[-1] == len(DATA) and seen == sorted(seen)
    assert leftovers(tmp_path) == ["big.bin"]


def test_a_large_file_is_cut_into_shrinking_spans_that_tile_it() -> None:
    mib = 1024 * KB
    planned = spans.plan_spans(0, 256 * mib, 6)  # over 6 x MAX_SPAN: more spans than streams
    sizes = [s.end - s.start for s in planned]
    assert planned[0].start == 0 and planned[-1].end == 256 * mib and len(planned) > 6
    assert all(a.end == b.start for a, b in itertools.pairwise(planned))
    assert sizes[:-1] == sorted(sizes[:-1], reverse=True)  # largest first: streams stagger
    assert all(x >= spans.MIN_SPAN for x in sizes[:-1]) and 0 < sizes[-1] <= spans.MIN_SPAN
    assert sizes[0] == 256 * mib // 12  # a 1 / (2 x streams) share of what is left
    # Below streams x MAX_SPAN: one equal span per stream, as before.
    assert len(spans.plan_spans(0, 64 * mib, 6)) == 6
    resumed = spans.plan_spans(100 * mib + 3, 256 * mib, 4)
    assert resumed[0].done == resumed[0].end == 100 * mib + 3 and resumed[1].start == 100 * mib + 3


async def test_more_spans_than_streams_are_taken_in_turn_over_kept_connections(
        runtime: RuntimeProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spans, "MAX_SPAN", 2 * SPAN)
    planned = spans.plan_spans(2 * SPAN, len(DATA), 2, SPAN)  # after the first span
    assert len(planned) > 4  # 3 MiB over 2 streams of at most 2 x SPAN each: more spans
    started: list[str] = []
    real = span_streams._one_span

    def spy(job: spans.SpanJob, fd: int, span: spans.Span) -> None:
        started.append(threading.current_thread().name)
        real(job, fd, span)

    monkeypatch.setattr(span_streams, "_one_span", spy)
    with CutProxy(runtime.port, cuts=0) as proxy:
        async with client_for(runtime, proxy.url) as c:
            with anyio.fail_after(60):
                res = await transfer.download(c, "big.bin", tmp_path, streams=2, min_span=SPAN)
        # Two streams, each over its one kept-alive connection, plus the stat's.
        assert proxy.connections <= 3 < len(planned)
    assert res.attempts == len(planned) == len(started) and set(started) == {"span-0", "span-1"}
    assert res.sha256 == sha(DATA) and res.path.read_bytes() == DATA
    assert leftovers(tmp_path) == ["big.bin"]


async def test_parallel_download_resumes_after_cuts(runtime: RuntimeProc, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(span_streams, "SAVE_EVERY", 64 * KB)  # streams record their progress often
    with CutProxy(runtime.port, down_after=300 * KB, cuts=4) as proxy:
        async with client_for(runtime, proxy.url) as c:
            with anyio.fail_after(60):
                res = await transfer.download(c, "big.bin", tmp_path, streams=4, min_span=SPAN)
        assert proxy.cut_count >= 1
    assert res.attempts > 4 and res.sha256 == sha(DATA)
    assert res.path.read_bytes() == DATA and leftovers(tmp_path) == ["big.bin"]


@pytest.mark.parametrize("streams_after", [4, 1])
async def test_an_interrupted_parallel_download_resumes_in_a_later_call(
        runtime: RuntimeProc, tmp_path: Path, streams_after: int) -> None:
    with CutProxy(runtime.port, down_after=400 * KB, cuts=None) as proxy:
        async with client_for(runtime, proxy.url) as c:
            with pytest.raises(RuntimeUnreachable, match="resume"), anyio.fail_after(60):
                await transfer.download(c, "big.bin", tmp_path, streams=4, min_span=SPAN,
                                        attempts=1)
    # Nothing under the final name; what arrived is recorded span by span.
    assert leftovers(tmp_path) == ["big.bin.part", "big.bin.part.json"]
    recorded = json.loads((tmp_path / "big.bin.part.json").read_text())["spans"]
    held = sum(done - start for start, done, _ in recorded)
    assert 0 < held < len(DATA) and len(recorded) == 5  # the first span and 4 more
    async with client_for(runtime) as c:
        with anyio.fail_after(60):
            res = await transfer.download(c, "big.bin", tmp_path, streams=streams_after,
                                          min_span=SPAN)
    if streams_after > 1:
        assert res.resumed_from == held
    else:  # one stream continues from the complete prefix only
        assert res.resumed_from == recorded[0][1]
    assert res.sha256 == sha(DATA) and res.path.read_bytes() == DATA
    assert leftovers(tmp_path) == ["big.bin"]


# ---------------------------------------------------------------- answers to refuse
@dataclass
class FakeSpans:
    """A span source over ``data`` that misbehaves as told (once, or always)."""

    data: bytes
    content_range: str | None = None  # sent instead of the true one
    later_total: int | None = None  # the total stated by spans not starting at 0
    encoding: str = ""
    whole: bool = False  # answer 200 with the whole body
    extra: int = 0  # bytes past the span's end
    short_once: set[int] = field(default_factory=set)  # span starts cut short the first time
    flip: int | None = None  # corrupt this byte of the file
    asked: list[tuple[int, int]] = field(default_factory=list)

    @contextlib.contextmanager
    def open_span(self, remote: str, start: int, end: int,
                  version: str | None) -> Iterator[RangeReply]:
        self.asked.append((start, end))
        body = bytearray(self.data)
        if self.flip is not None:
            body[self.flip] ^= 0xFF
        piece = bytes(body) if self.whole else bytes(body[start:end + 1 + self.extra])
        if start in self.short_once:
            self.short_once.discard(start)
            piece = piece[:len(piece) // 2]
        end = min(end, len(self.data) - 1)  # as a server clamps a range past the end
        total = self.later_total if start and self.later_total else len(self.data)
        cr = self.content_range or f"bytes {start}-{end}/{total}"
        chunks = iter([piece[i:i + 64 * KB] for i in range(0, len(piece), 64 * KB)])
        yield RangeReply(partial=not self.whole, version='"v1"', encoding=self.encoding,
                         chunks=chunks,
                         content_range=None if self.whole else cr)

    def open_range(self, remote: str, offset: int, version: str | None,
                   compress: bool) -> contextlib.AbstractContextManager[RangeReply]:
        return self.open_span(remote, offset, len(self.data) - 1, version)

    def backoff(self, failures: int) -> float:
        return 0.0


async def _fetch(src: FakeSpans, final: Path) -> str:
    assert isinstance(src, SpanSource)
    with anyio.fail_after(60):
        got = await fetch(src, "f.bin", final, size=len(src.data), version='"v1"', streams=3,
                          min_span=SPAN, attempts=3)
    return got.sha256


@pytest.mark.parametrize("bad", [
    {"content_range": "bytes 0-99/200"},            # another range than asked
    {"content_range": "bytes 0-1048575/99999999"},  # another total size
    {"content_range": "garbage"},
    {"whole": True},                                # a 200 to a range request
    {"extra": 10},                                  # more bytes than the span
])
async def test_a_span_answer_that_is_not_what_was_asked_is_refused(
        tmp_path: Path, bad: dict[str, object]) -> None:
    src = FakeSpans(os.urandom(2 * 1024 * KB), **bad)  # type: ignore[arg-type]
    with pytest.raises(RuntimeMisbehaved, match=r"refused|more than the bytes"):
        await _fetch(src, tmp_path / "f.bin")
    assert leftovers(tmp_path) == []


async def test_a_new_download_asks_its_first_span_before_any_stat(
        runtime: RuntimeProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stats: list[bool] = []
    real = transfer.stat

    async def spy(client: RuntimeClient, path: str, *, with_hash: bool = True) -> object:
        stats.append(with_hash)
        return await real(client, path, with_hash=with_hash)

    monkeypatch.setattr(transfer, "stat", spy)
    async with client_for(runtime) as c:
        with anyio.fail_after(60):
            res = await transfer.download(c, "big.bin", tmp_path, streams=4, min_span=SPAN)
    # Only the sha256 (asked beside the spans); the size came from the first answer.
    assert stats == [True]
    assert res.sha256 == sha(DATA) and res.path.read_bytes() == DATA

    src = FakeSpans(os.urandom(3 * SPAN + 5))
    with anyio.fail_after(60):
        got = await parallel.fetch_unsized(src, "f.bin", tmp_path / "f.bin", streams=2,
                                            min_span=SPAN)
    assert src.asked[0] == (0, 2 * SPAN - 1) and got.size == len(src.data)
    assert got.sha256 == sha(src.data) and got.version == '"v1"'
    # A file smaller than the first span: one answer holds it all.
    small = FakeSpans(os.urandom(1000))
    with anyio.fail_after(60):
        got = await parallel.fetch_unsized(small, "s.bin", tmp_path / "s.bin", streams=4,
                                            min_span=SPAN)
    assert small.asked == [(0, 2 * SPAN - 1)] and got.sha256 == sha(small.data)


async def test_empty_files_and_directories_still_download_or_say_why(
        runtime: RuntimeProc, tmp_path: Path) -> None:
    (runtime.root / "empty.bin").write_bytes(b"")
    (runtime.root / "adir").mkdir(exist_ok=True)
    async with client_for(runtime) as c:
        with anyio.fail_after(60):
            res = await transfer.download(c, "empty.bin", tmp_path, streams=4, min_span=SPAN)
            assert res.size == 0 and res.path.read_bytes() == b""
            with pytest.raises(InvalidInput, match="download_dir"):
                await transfer.download(c, "adir", tmp_path, streams=4, min_span=SPAN)
    assert leftovers(tmp_path) == ["empty.bin"]


@pytest.mark.parametrize("bad", [
    {"content_range": "bytes 0-99/3000000"},        # ends before the asked span or the file
    {"content_range": "bytes 1-524287/3000000"},    # does not start at 0
    {"content_range": "bytes 0-524287/0"},          # a total that cannot hold the range
    {"content_range": "bytes 0-524287/524287"},     # ends past the stated total
    {"content_range": "garbage"},
    {"encoding": "gzip"},                           # not the identity asked for
    {"later_total": 5 * 1024 * KB},                 # a later span states another size
])
async def test_a_first_answer_that_does_not_state_a_size_sanely_is_refused(
        tmp_path: Path, bad: dict[str, object]) -> None:
    src = FakeSpans(os.urandom(3 * 1024 * KB), **bad)  # type: ignore[arg-type]
    with pytest.raises(RuntimeMisbehaved, match="refused"), anyio.fail_after(60):
        await parallel.fetch_unsized(src, "f.bin", tmp_path / "f.bin", streams=3,
                                      min_span=SPAN)
    assert leftovers(tmp_path) == []


async def test_a_whole_body_for_the_first_span_is_left_unread(tmp_path: Path) -> None:
    """A server that ignores Range: nothing is read, the caller asks a stat instead."""
    src = FakeSpans(os.urandom(3 * 1024 * KB), whole=True)
    with pytest.raises(spans.NotRanged), anyio.fail_after(60):
        await parallel.fetch_unsized(src, "f.bin", tmp_path / "f.bin", streams=3,
                                      min_span=SPAN)
    assert leftovers(tmp_path) == []


async def test_a_first_answer_stating_a_huge_size_writes_nothing(tmp_path: Path) -> None:
    src = FakeSpans(os.urandom(3 * 1024 * KB),
                    content_range=f"bytes 0-{2 * SPAN - 1}/{10**18}")
    with pytest.raises(LocalWriteFailed, match="would not fit"), anyio.fail_after(60):
        await parallel.fetch_unsized(src, "f.bin", tmp_path / "f.bin", streams=3,
                                      min_span=SPAN)
    assert leftovers(tmp_path) == []


async def test_a_short_span_is_a_drop_and_resumes(tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * KB)
    src = FakeSpans(data, short_once={0, len(data) // 3 + 1})
    digest = await _fetch(src, tmp_path / "f.bin")
    assert digest == sha(data) and len(src.asked) >= 5
    assert (tmp_path / "f.bin.part").read_bytes() == data


async def test_corrupted_bytes_fail_the_whole_file_digest(tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * KB)
    final = tmp_path / "f.bin"
    src = FakeSpans(data, flip=len(data) - 5)  # in the last span
    with anyio.fail_after(60):
        got = await fetch(src, "f.bin", final, size=len(data), version='"v1"', streams=3,
                          min_span=SPAN)
    with pytest.raises(ChecksumMismatch, match="partial file was removed"):
        verify_and_publish(got, sha(data), final, False, "f.bin")
    assert leftovers(tmp_path) == []


def span_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("span-")]


async def test_a_cancelled_parallel_download_stops_every_stream_and_resumes(
        runtime: RuntimeProc, tmp_path: Path) -> None:
    # Every stream stalls mid-body (held by the proxy), so the cancel surely lands
    # mid-download, and a stream blocked in a read must be woken to stop.
    with CutProxy(runtime.port, cuts=0, hold_after=64 * KB) as proxy:
        async with client_for(runtime, proxy.url) as c:
            with anyio.fail_after(60):
                with anyio.CancelScope() as scope:
                    def cancel_when_stalled(done: int, total: int | None) -> None:
                        if done > 0 and proxy.held == 4:  # every stream is stuck mid-body
                            scope.cancel()

                    await transfer.download(c, "big.bin", tmp_path, streams=4, min_span=SPAN,
                                            progress=cancel_when_stalled)
            assert scope.cancelled_caught and not (tmp_path / "big.bin").exists()
            # Stalled streams were closed under their reads, not left to a read timeout.
            assert proxy.held == 4 and span_threads() == []
            record = (tmp_path / "big.bin.part.json").read_text()
            part = (tmp_path / "big.bin.part").read_bytes()
            proxy.release()  # a stream still alive would now go on writing
            await anyio.sleep(0.3)
            assert (tmp_path / "big.bin.part.json").read_text() == record
            assert (tmp_path / "big.bin.part").read_bytes() == part
            held = sum(d - a for a, d, _ in json.loads(record)["spans"])
            assert 0 < held < len(DATA)
            with anyio.fail_after(60):
                again = await transfer.download(c, "big.bin", tmp_path, streams=4,
                                                min_span=SPAN)
    assert again.resumed_from == held
    assert again.sha256 == sha(DATA) and again.path.read_bytes() == DATA
    assert leftovers(tmp_path) == ["big.bin"]


async def test_a_cancel_during_publishing_waits_for_it_then_takes_effect(
        runtime: RuntimeProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The finishing step runs in a thread asyncio cannot cancel: the caller waits for it."""
    loop = asyncio.get_running_loop()
    real = publish.verify_and_publish

    def on_loop(fn: Callable[[], object]) -> None:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        loop.call_soon_threadsafe(lambda: (fn(), done.set_result(None)))
        done.result(10)

    def cancel_then_publish(*args: object) -> None:
        on_loop(scope.cancel)
        for _ in range(3):  # loop rounds: a cancel that reached the caller has run by now
            on_loop(lambda: None)
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(publish, "verify_and_publish", cancel_then_publish)
    async with client_for(runtime) as c:
        with anyio.fail_after(60), anyio.CancelScope() as scope:
            await transfer.download(c, "big.bin", tmp_path, streams=4, min_span=SPAN)
        # Told "cancelled" only once the step was whole: published, record dropped.
        assert scope.cancelled_caught
        assert leftovers(tmp_path) == ["big.bin"]
        assert (tmp_path / "big.bin").read_bytes() == DATA
