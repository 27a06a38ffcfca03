"""The agent's HTTP listener: a small aiohttp application on the agent's own event loop.

Why aiohttp: its server is built to be embedded. ``AppRunner`` and ``TCPSite`` start on the
loop that is already running and stop when told; it installs no signal handlers and
configures no logging of its own (uvicorn, the other server at hand, wants to own both).
Its HTTP/1.1 parser is llhttp, and routing, JSON and request bodies are there for the
outbound-call API that will share this listener.

Every handler runs on the loop that carries the media, so a handler reads state that is
already there and returns: no blocking call, no waiting on a call or a backend.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from agent.config import ConfigError


class HttpListener:
    """Serves ``routes`` on ``host:port`` from ``start`` to ``stop``."""

    def __init__(
        self,
        host: str,
        port: int,
        routes: Iterable[web.RouteDef],
        *,
        max_body_bytes: int = 1024**2,
    ) -> None:
        """``max_body_bytes``: a larger request body is refused (413) unread."""
        self.host = host
        self.port = port
        app = web.Application(client_max_size=max_body_bytes)
        app.add_routes(list(routes))
        # No access log: a scraper every few seconds would be most of the agent's log. A
        # request still open at stop gets a second, not aiohttp's default minute: the drain
        # is over by then.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        self.bound_port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.bound_port}"

    async def start(self) -> None:
        """Listen; a port in use or a bad address is a ``ConfigError`` (one line, exit 2)."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(
                f"cannot listen for HTTP on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.bound_port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        await self._runner.cleanup()
