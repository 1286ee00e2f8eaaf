"""Who is asking: the client address of a request, aware of local tunnel agents.

A tunnel (ngrok, cloudflared) runs an agent on the same machine that connects to
the runtime from loopback and names the real client in ``X-Forwarded-For`` or
``Forwarded``.  Those headers are believed only when the TCP peer is the tunnel
agent this runtime started (its pid, matched through ``/proc``: ``peerproc.py``)
or inside a network given with ``--trusted-proxy`` (none by default); any other
local process speaks for itself.  They are read from the right: each hop appends
the address it saw, so the rightmost entry that is not itself a trusted proxy is
the client; anything a client wrote further left is ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache

from starlette.types import Scope

from smartcolab.runtime.security.peerproc import peer_is_process

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_FORWARDED_FOR = re.compile(r'for\s*=\s*("[^"]*"|[^;,\s]+)', re.IGNORECASE)
UNKNOWN = "unknown"


def parse_networks(cidrs: Iterable[str]) -> list[IPNetwork]:
    """Parse CIDRs (a bare address is a /32 or /128); raise ValueError with the culprit."""
    nets: list[IPNetwork] = []
    for text in cidrs:
        try:
            nets.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP network in CIDR notation: {text!r} "
                             "(examples: 10.0.0.0/8, 203.0.113.7, 2001:db8::/32)") from None
    return nets


# Every request parses its peer's address (and the Host's): ipaddress takes microseconds
# a time; addresses repeat.  Bounded: forwarded entries are the client's own text.
@lru_cache(maxsize=1024)
def parse_address(text: str) -> IPAddress | None:
    """An address from a forwarding header entry: strips quotes, brackets and ports."""
    value = text.strip().strip('"').strip()
    if value.startswith("["):  # "[2001:db8::1]:4711"
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # "203.0.113.7:4711"
        value = value.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _in(addr: IPAddress, nets: list[IPNetwork]) -> bool:
    return any(addr.version == net.version and addr in net for net in nets)


class ClientResolver:
    """Resolves the client address of a request and checks it against an allowlist."""

    def __init__(self, trusted_proxies: Iterable[str], allow_cidrs: Iterable[str]) -> None:
        self.trusted = parse_networks(trusted_proxies)
        self.allow = parse_networks(allow_cidrs)
        self.agent_pids: set[int] = set()

    def trust_agent(self, pid: int) -> None:
        """Believe forwarding headers on loopback connections made by process ``pid``."""
        self.agent_pids.add(pid)

    def _proxy(self, peer: IPAddress, port: object) -> bool:
        if _in(peer, self.trusted):
            return True
        return (peer.is_loopback and isinstance(port, int)
                and peer_is_process(str(peer), port, self.agent_pids))

    def client(self, scope: Scope) -> str:
        """The client address as text (``unknown`` when the server was not told)."""
        peer_info = scope.get("client")
        peer = parse_address(str(peer_info[0])) if peer_info else None
        if peer is None:
            return UNKNOWN
        hops = self._forwarded_hops(scope)
        if not hops or not self._proxy(peer, peer_info[1] if peer_info else None):
            return str(peer)
        current = peer
        for entry in reversed(hops):
            addr = parse_address(entry)
            if addr is None:
                # A hop we cannot read: stop at the last proxy we trust rather than
                # let a client choose its identity (and its rate-limit bucket).
                break
            current = addr
            if not _in(addr, self.trusted):
                break
        return str(current)

    def allowed(self, client: str) -> bool:
        """True when no allowlist is set or the address is inside one of its networks."""
        if not self.allow:
            return True
        addr = parse_address(client)
        return addr is not None and _in(addr, self.allow)

    @staticmethod
    def _forwarded_hops(scope: Scope) -> list[str]:
        xff: list[str] = []
        forwarded: list[str] = []
        for key, value in scope.get("headers", []):
            name = key.decode("latin-1").lower()
            if name == "x-forwarded-for":
                xff.extend(part for part in value.decode("latin-1").split(",") if part.strip())
            elif name == "forwarded":
                forwarded.extend(_FORWARDED_FOR.findall(value.decode("latin-1")))
        # The de-facto header of ngrok and cloudflared wins; RFC 7239 is the fallback.
        return xff or forwarded
