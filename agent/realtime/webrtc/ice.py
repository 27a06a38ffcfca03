"""Which host addresses ICE offers: loopback for a peer on loopback, else aioice's default.

aioice gathers host candidates from every interface except 127.0.0.1, so two peers on one
machine's loopback (the agent and its embedded server, CI) would connect over whatever LAN
address the machine has, or not at all in a network namespace with none. Candidates are
gathered inside ``setLocalDescription``, in the awaiting task, so a context variable scopes
the choice to one peer connection without touching the others.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
from collections.abc import Iterator
from typing import Any

import aioice.ice

_HOSTS: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "webrtc_ice_hosts", default=None
)
_default_host_addresses = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    hosts = _HOSTS.get()
    if hosts is None:
        return list(_default_host_addresses(use_ipv4, use_ipv6))
    return list(hosts)


aioice.ice.get_host_addresses = _host_addresses


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def candidates_on(host: str) -> Iterator[None]:
    """Within this block, a peer connection gathers its host candidates on ``host`` only
    when it is a loopback address (to reach a peer on the same machine's loopback)."""
    token: contextvars.Token[Any] | None = None
    if is_loopback(host):
        address = "127.0.0.1" if host == "localhost" else host.strip("[]")
        token = _HOSTS.set((address,))
    try:
        yield
    finally:
        if token is not None:
            _HOSTS.reset(token)
