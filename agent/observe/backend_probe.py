"""Is the realtime backend reachable? A TCP connect to its host and port, now and then.

A TCP handshake says the backend's address answers without opening a session (which a
cloud provider would count) or sending a key. It runs as a task of its own on the agent's
loop (name resolution in the loop's executor), so readiness only ever reads the last result.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import structlog

log = structlog.get_logger("health")

#: How often the backend is probed, and how long one probe may take.
PROBE_INTERVAL_S = 5.0
PROBE_TIMEOUT_S = 2.0


def backend_address(url: str) -> tuple[str, int]:
    """Host and port of a ws:// or wss:// URL (80 and 443 when it names none)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    return parts.hostname, parts.port or (443 if parts.scheme == "wss" else 80)


class BackendProbe:
    """``reachable``: None until the first probe, then its latest answer."""

    def __init__(
        self,
        url: str,
        interval_s: float = PROBE_INTERVAL_S,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.host, self.port = backend_address(url)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.reachable: bool | None = None
        self.error = ""

    async def run(self) -> None:
        """Probe every ``interval_s`` until cancelled; log each change."""
        while True:
            await self.check()
            await asyncio.sleep(self.interval_s)

    async def check(self) -> bool:
        try:
            # asyncio.timeout, not wait_for: on 3.11 a cancel arriving as the connect fails
            # was swallowed by wait_for, the probe went on forever and the agent never
            # finished stopping (a SIGTERM right after start-up with the backend down).
            async with asyncio.timeout(self.timeout_s):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            self._settle(False, str(exc) or type(exc).__name__)
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        self._settle(True, "")
        return True

    def _settle(self, reachable: bool, error: str) -> None:
        if reachable != self.reachable:
            where = f"{self.host}:{self.port}"
            if reachable:
                log.info("backend_reachable", backend=where)
            else:
                log.warning("backend_unreachable", backend=where, error=error)
        self.reachable, self.error = reachable, error
