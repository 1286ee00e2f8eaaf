"""Small parts of the per-job hot path, checked against what they replace."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import psutil
import pytest

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
