"""Which local process holds the other end of a loopback TCP connection (Linux /proc).

Forwarding headers (``X-Forwarded-For``) are believed on a loopback connection only
when it comes from the tunnel agent this runtime started: any other local process
could otherwise pick its own address and with it bypass the rate limit, the lockout
and ``--allow-cidr``.  The agent's sockets are found by inode: ``/proc/net/tcp{,6}``
maps the peer's (address, port) to a socket inode, ``/proc/PID/fd`` lists the
agent's socket inodes.  Where ``/proc`` is missing the answer is "not the agent".
"""

from __future__ import annotations

import ipaddress
import os
import struct

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def _hex_addr(ip: str, port: int) -> tuple[str, str]:
    """The (/proc/net/tcp, /proc/net/tcp6) spelling of ``ip:port``."""
    addr = ipaddress.ip_address(ip)
    port_hex = f"{port:04X}"
    if isinstance(addr, ipaddress.IPv4Address):
        v4 = f"{struct.unpack('<I', addr.packed)[0]:08X}:{port_hex}"
        mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
        return v4, _v6_hex(mapped.packed) + ":" + port_hex
    return "", _v6_hex(addr.packed) + ":" + port_hex


def _v6_hex(packed: bytes) -> str:
    return "".join(f"{struct.unpack('<I', packed[i:i + 4])[0]:08X}" for i in range(0, 16, 4))


def socket_inode(ip: str, port: int) -> int | None:
    """The inode of the open TCP socket whose local end is ``ip:port``, if any."""
    try:
        v4, v6 = _hex_addr(ip, port)
    except ValueError:
        return None
    for table, wanted in zip(_TABLES, (v4, v6), strict=True):
        if not wanted:
            continue
        try:
            with open(table, encoding="ascii") as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    # Inode 0 is a socket no process holds (TIME_WAIT): an earlier
                    # connection that had the same local port; the live one may follow.
                    if len(fields) > 9 and fields[1] == wanted and fields[9] != "0":
                        return int(fields[9])
        except OSError:
            continue
    return None


def process_socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open (empty if it is gone)."""
    inodes: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def peer_is_process(ip: str, port: int, pids: set[int]) -> bool:
    """True when the connection from ``ip:port`` belongs to one of ``pids``."""
    if not pids:
        return False
    inode = socket_inode(ip, port)
    if inode is None or inode == 0:
        return False
    return any(inode in process_socket_inodes(pid) for pid in pids)
