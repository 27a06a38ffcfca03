"""Local ports, probed by binding: whether one is free, and one the kernel picks.

A probe binds and closes at once, so its answer can be stale by the time the port is used:
callers that start a stack on the port still handle the stack's own refusal.
"""

from __future__ import annotations

import socket


def can_bind(host: str, port: int, kind: int = socket.SOCK_DGRAM) -> bool:
    """Whether nothing holds ``host:port`` for ``kind`` (UDP or TCP) right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def unused_port(host: str, kind: int = socket.SOCK_DGRAM) -> int:
    """A port on ``host`` the kernel picked as free for ``kind``."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
