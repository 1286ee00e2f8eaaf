"""Small parts of the per-job hot path, checked against what they replace."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import psutil
import pytest

from smartcolab.runtime.engine.output import MEMO_BYTES, SpillFile, read_capped
from smartcolab.runtime.host import resources
from smartcolab.runtime.security.connections import CoalescingTransport


def test_ram_reads_what_psutil_reads() -> None:
    fast = resources._meminfo_ram()
    if not Path("/proc/meminfo").exists():
        assert fast is None
        pytest.skip("no /proc/meminfo here: psutil answers")
    vm = psutil.virtual_memory()
    assert fast is not None
    assert fast.total == vm.total
    # Memory moves between the two reads: the same order of magnitude is what matters.
    assert abs(fast.available - vm.available) < 0.05 * vm.total
    assert abs(fast.percent - vm.percent) < 5
    assert resources.ram().total == vm.total


def test_ram_falls_back_to_psutil(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    odd = tmp_path / "meminfo"
    odd.write_text("MemTotal:       1000 kB\nMemFree:         500 kB\n")  # no MemAvailable
    monkeypatch.setattr(resources, "_MEMINFO", str(odd))
    assert resources._meminfo_ram() is None
    assert resources.ram().total == psutil.virtual_memory().total


def test_ram_reads_the_file_afresh_through_its_kept_descriptor(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       1000 kB\nMemFree:         500 kB\n"
                    "MemAvailable:    600 kB\n")
    monkeypatch.setattr(resources, "_MEMINFO", str(info))
    first = resources._meminfo_ram()
    assert first is not None and (first.total, first.available) == (1024000, 614400)
    with open(info, "r+") as fh:  # the same file, new figures: read again, not remembered
        fh.write("MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    200 kB\n")
    second = resources._meminfo_ram()
    assert second is not None and second.available == 204800 and second.percent == 80.0


def test_small_output_is_read_from_memory_as_from_the_file(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "job" / "output.txt")
    spill.prepare()
    for piece in ["héllo\n", "x" * 100, "☃" * 50, "\n"]:
        spill.write(piece)
        if piece == "x" * 100:
            spill.close()  # a late write reopens the file: the copy goes on
        memo = spill.memo
        assert memo is not None and bytes(memo) == spill.path.read_bytes()
        for start in range(0, spill.size, 7):
            for limit in (5, 64, 10**6):
                assert read_capped(spill.path, start, spill.size, limit, memo) == \
                    read_capped(spill.path, start, spill.size, limit)
    spill.write("y" * MEMO_BYTES)  # past the size kept in memory: the file alone
    assert spill.memo is None
    spill.close()
    again = SpillFile(spill.path)  # a file with bytes of before: never from memory
    again.prepare()
    again.write("z")
    assert again.memo is None
    again.close()


def test_coalescing_transport_sends_one_turns_writes_at_once() -> None:
    """Headers and body written in one loop turn reach the peer as one send; a large
    write is not held; close sends what is held first."""

    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
        sends: list[bytes] = []
        real_write = transport.write

        def counted(data: bytes) -> None:
            sends.append(bytes(data))
            real_write(data)

        transport.write = counted  # type: ignore[method-assign]
        wrapped = CoalescingTransport(transport, loop)
        wrapped.write(b"HTTP/1.1 200 OK\r\n\r\n")
        wrapped.write(b'{"ok":true}')
        assert sends == []  # held until the end of this turn
        await asyncio.sleep(0)
        assert sends == [b'HTTP/1.1 200 OK\r\n\r\n{"ok":true}']
        big = b"x" * CoalescingTransport.FLUSH_BYTES
        wrapped.write(big)
        assert sends[-1] == big  # not held
        wrapped.write(b"tail")
        wrapped.close()
        assert sends[-1] == b"tail"
        assert wrapped.is_closing()  # the rest is the wrapped transport's
        received = b""
        while len(received) < 19 + 11 + len(big) + 4:
            await asyncio.sleep(0.01)
            try:
                received += theirs.recv(1 << 20)
            except BlockingIOError:
                continue
        theirs.close()
        assert received.endswith(b"tail")
        return sends

    assert len(asyncio.run(scenario())) == 3


def test_spill_size_without_a_stat_at_creation(tmp_path: Path) -> None:
    """A spill file learns its size when it is opened (or first asked): the same size a
    stat at creation gave, for a new file and for one already there."""
    from smartcolab.runtime.engine.output import SpillFile

    fresh = SpillFile(tmp_path / "new" / "output.txt")
    fresh.prepare()
    assert fresh.size == 0
    fresh.write("héllo\n")
    assert fresh.size == len("héllo\n".encode()) == fresh.path.stat().st_size
    fresh.close()

    for ask_first in (True, False):
        old = SpillFile(fresh.path)
        if ask_first:
            assert old.size == 7  # a long-poll asking before the job started
        old.prepare()
        old.write("more\n")
        assert old.size == 12 == old.path.stat().st_size
        old.close()
        fresh.path.write_bytes(b"h\xc3\xa9llo\n")
    assert SpillFile(tmp_path / "none.txt").size == 0
