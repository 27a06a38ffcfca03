"""A data channel dressed as the WebSocket connection ``LocalSession`` serves: iterate it for
client messages, ``send`` text, ``close``. One session loop serves both transports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiortc import RTCDataChannel, RTCPeerConnection
from websockets.exceptions import ConnectionClosedOK

_CLOSED = object()


class DataChannelConnection:
    """The ``oai-events`` channel of one peer connection."""

    def __init__(self, channel: RTCDataChannel, pc: RTCPeerConnection, path: str) -> None:
        self._channel = channel
        self._pc = pc
        self.path = path
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        channel.on("message", self._inbox.put_nowait)
        channel.on("close", lambda: self._inbox.put_nowait(_CLOSED))
        pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        if self._pc.connectionState in ("failed", "closed"):
            self._inbox.put_nowait(_CLOSED)

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        while True:
            message = await self._inbox.get()
            if message is _CLOSED:
                return
            if isinstance(message, str | bytes):
                yield message

    async def send(self, text: str) -> None:
        if self._channel.readyState != "open":
            # What LocalSession's writer expects of a connection that is gone.
            raise ConnectionClosedOK(None, None)
        self._channel.send(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """End the session: the channel and the whole peer connection with it."""
        self._inbox.put_nowait(_CLOSED)
        await self._pc.close()
