"""The WebSocket transport of a realtime session: connect, send text, read messages.

It carries wire text both ways and knows nothing of the protocol in it (the protocol
adapters do).

Connection failures are told apart (bad key, wrong deployment/path/api-version, rate limit,
timeout, TLS, refused) and reported as one line that names the URL but never a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State

from agent.observe.logging import scrub
from agent.realtime.endpoint import RealtimeEndpoint

#: Audio deltas can be large (a whole sentence of 24 kHz audio in one frame).
_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Longest wait for the server's side of the closing handshake.
_CLOSE_TIMEOUT_S = 2.0

_STATUS_HINTS = {
    401: "authentication failed: the API key was rejected",
    403: "forbidden: the key has no access to this model or deployment",
    404: "not found: check the deployment name, URL path and api-version",
    429: "rate limited or out of quota",
}


class RealtimeConnectError(Exception):
    """The session could not be opened; ``str()`` is one line safe to log."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(scrub(message))
        self.status = status


def _explain(exc: BaseException, endpoint: RealtimeEndpoint) -> RealtimeConnectError:
    where = f"{endpoint.provider} {endpoint.url}"
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        hint = _STATUS_HINTS.get(status, "unexpected HTTP status")
        return RealtimeConnectError(f"{where}: HTTP {status} {hint}", status)
    if isinstance(exc, TimeoutError):
        return RealtimeConnectError(f"{where}: timed out while connecting")
    if isinstance(exc, ssl.SSLError):
        return RealtimeConnectError(f"{where}: TLS error: {exc.reason or exc}")
    if isinstance(exc, InvalidURI):
        return RealtimeConnectError(f"{where}: invalid URL")
    if isinstance(exc, InvalidHandshake):
        return RealtimeConnectError(f"{where}: WebSocket handshake failed: {exc}")
    if isinstance(exc, OSError):
        return RealtimeConnectError(f"{where}: cannot connect: {exc.strerror or exc}")
    return RealtimeConnectError(f"{where}: {type(exc).__name__}: {exc}")


class RealtimeConnection:
    """A connected session. Iterate it for server events (parsed JSON objects)."""

    def __init__(self, ws: ClientConnection, endpoint: RealtimeEndpoint) -> None:
        self._ws = ws
        self.endpoint = endpoint
        self.dialect = endpoint.dialect

    #: Audio goes in the events (base64) on a WebSocket.
    media = None

    @classmethod
    async def open(cls, endpoint: RealtimeEndpoint, timeout_s: float) -> RealtimeConnection:
        try:
            ws = await asyncio.wait_for(
                connect(
                    endpoint.url,
                    additional_headers=endpoint.headers,
                    open_timeout=timeout_s,
                    max_size=_MAX_MESSAGE_BYTES,
                    compression=None,
                    close_timeout=_CLOSE_TIMEOUT_S,
                    user_agent_header="voice-agent",
                ),
                timeout_s,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ssl.SSLError) as exc:
            raise _explain(exc, endpoint) from None
        return cls(ws, endpoint)

    async def send(self, text: str) -> None:
        """Send one message (a wire event)."""
        await self._ws.send(text)

    def send_now(self, text: str) -> bool:
        """``send`` without its coroutine: websockets' ``send`` writes the frame at once and
        then waits only while flow control holds writes back, so while it does not, writing
        is all there is to it. The caller's audio goes this way from the media clock's
        callback, 50 times a second per call."""
        ws = self._ws
        if ws.protocol.state is not State.OPEN or ws.paused or ws.send_in_progress is not None:
            return False
        ws.protocol.send_text(text.encode())
        ws.send_data()
        return True

    async def messages(self) -> AsyncIterator[str | bytes]:
        """The server's messages until the connection closes."""
        try:
            async for message in self._ws:
                yield message
        except ConnectionClosed:
            return

    @property
    def closed(self) -> bool:
        return self._ws.close_code is not None

    @property
    def close_reason(self) -> str:
        code = self._ws.close_code
        return f"{code} {self._ws.close_reason or ''}".strip() if code is not None else ""

    async def close(self) -> None:
        """Close the session, reading (and dropping) what the server still sends meanwhile.

        A call that has ended no longer reads its events, and a server streaming a reply
        fills the socket with audio ahead of the close: unread, it would hold the server's
        answer to our close frame behind it, and the close would wait out its timeout.
        """
        reader = asyncio.create_task(self._discard_incoming())
        try:
            await self._ws.close()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _discard_incoming(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in self._ws:
                pass
