"""Which ``Host`` and ``Origin`` a request may carry: the defence against DNS rebinding.

A web page can make the browser send requests to ``127.0.0.1`` by giving its own
name (``attacker.test``) a DNS answer of 127.0.0.1: the browser then thinks the
runtime is the attacker's origin and lets the page read its answers.  Such a request
always carries the attacker's name in ``Host``.  As Jupyter Server does, the runtime
answers only Hosts it knows:

* IP literals (a rebinding needs a DNS name the attacker controls; a literal is never one),
* ``localhost`` and names under ``.localhost`` (browsers resolve those to loopback only),
* the name it was told to bind, the public tunnel's hostname once one is open,
* names given with ``--allow-host`` (``*.example.com`` for a domain and its subdomains,
  ``*`` for any name: only behind a proxy that checks Host itself),
* ``*.googleusercontent.com`` and ``*.colab.dev``: Colab's port proxy, whose DNS
  only Google controls.

``Origin`` (sent by browsers with cross-origin and non-GET requests) must be the
request's own origin, or an origin whose host is a loopback address or one of the
names above (never any IP literal: a page served from an attacker's IP would pass),
or one given with ``--allow-origin``.  ``Origin: null`` (sandboxed frames, files) is
refused.  Requests without ``Origin`` (curl, our client, ``<img>`` tags) are not
affected: those cannot read the answers across origins.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost",)
# Colab's kernel-port proxy (serve_kernel_port_as_iframe) serves /ui from names under
# these domains (older and newer Colab); only Google controls their DNS.
DEFAULT_EXTRA_HOSTS = ("*.googleusercontent.com", "*.colab.dev")
WILDCARD_BIND = frozenset({"", "0.0.0.0", "::", "*"})


def split_host(value: str) -> str:
    """The hostname of a ``Host`` header (port and IPv6 brackets removed, lowercased)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


@lru_cache(maxsize=1024)  # asked on every request, of a Host that rarely changes
def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return None


def _matches(name: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".example.com"
        return name.endswith(suffix) or name == pattern[2:]
    return name == pattern


class HostPolicy:
    """The allowed Host names and Origins of one runtime; names can be added while it runs."""

    def __init__(self, *, bind_host: str = "", allowed_hosts: Iterable[str] = (),
                 allowed_origins: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        names = [*LOOPBACK_NAMES, *DEFAULT_EXTRA_HOSTS, *allowed_hosts]
        if bind_host not in WILDCARD_BIND:
            names.append(bind_host)
        self._patterns = [split_host(n) if not n.startswith("*") else n.lower() for n in names]
        self._origins = {o.strip().rstrip("/").lower() for o in allowed_origins}

    def allow_url(self, url: str) -> None:
        """Allow the hostname of ``url`` (the public tunnel's, once it is open)."""
        host = urlsplit(url).hostname
        if host:
            with self._lock:
                self._patterns.append(host.lower())

    @property
    def patterns(self) -> list[str]:
        with self._lock:
            return list(self._patterns)

    def _named(self, name: str) -> bool:
        if name == "localhost" or name.endswith(".localhost"):
            return True
        return any(_matches(name, p) for p in self.patterns)

    def host_ok(self, host_header: str | None) -> bool:
        """True for a Host this runtime answers to (a missing Host is HTTP/1.0: allowed)."""
        if host_header is None:
            return True
        name = split_host(host_header)
        if not name:
            return False
        return _ip(name) is not None or self._named(name)

    def origin_ok(self, origin: str, host_header: str | None, scheme: str) -> bool:
        """True for an Origin that may talk to this runtime (see the module docstring)."""
        value = origin.strip().rstrip("/").lower()
        if value in self._origins:
            return True
        if value == "null":
            return False
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        if host_header is not None and parts.netloc == host_header.strip().lower() \
                and parts.scheme == scheme:
            return True  # same origin
        name = parts.hostname
        addr = _ip(name)
        if addr is not None:
            return addr.is_loopback
        return self._named(name)
