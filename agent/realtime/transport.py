"""The realtime transport interface: how a call reaches the model, whatever carries it.

Today's transport is WebSocket (``agent.realtime.connection.RealtimeConnection``). A
transport moves wire text both ways; the protocol adapter gives it meaning. Adding a
transport (WebRTC's data channel) means one module that satisfies this, plus a registry line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class RealtimeTransport(Protocol):
    """One open session's connection."""

    async def send(self, text: str) -> None:
        """Send one wire event; raises when the connection is gone."""
        ...

    def messages(self) -> AsyncIterator[str | bytes]:
        """The server's messages, in order, until the connection closes."""
        ...

    @property
    def close_reason(self) -> str:
        """Why the connection closed ("" while open), safe to log."""
        ...

    async def close(self) -> None:
        """Close, promptly, whatever the server still sends."""
        ...
