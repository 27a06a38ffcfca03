"""The realtime transport interface: how a call reaches the model, whatever carries it.

Two transports satisfy it: WebSocket (``agent.realtime.connection.RealtimeConnection``) and
WebRTC (``agent.realtime.webrtc.connection.WebRtcConnection``); ``agent.realtime.transports``
opens the configured one. A transport moves wire text both ways; the protocol adapter gives
it meaning. A transport that carries audio itself (WebRTC's media track) says so with
``media``: the shell then hands it the caller's audio instead of encoding ``AppendAudio``,
and feeds the bridge the model's audio from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class MediaPath(Protocol):
    """Audio both ways beside the events: PCM16 mono at the transport's own rate."""

    def send_audio(self, audio: bytes) -> None:
        """Queue caller audio; it goes out paced in real time."""
        ...

    def audio(self) -> AsyncIterator[bytes]:
        """The model's audio as it arrives (a chunk per media frame), until the track ends."""
        ...


class RealtimeTransport(Protocol):
    """One open session's connection."""

    #: The transport's media path, or None when audio goes in the events (WebSocket).
    @property
    def media(self) -> MediaPath | None: ...

    async def send(self, text: str) -> None:
        """Send one wire event; raises when the connection is gone."""
        ...

    def send_now(self, text: str) -> bool:
        """Write one wire event at once, from a synchronous callback: True once written;
        False, writing nothing, when the connection cannot take it without waiting (gone,
        or its peer is behind and flow control holds writes back): ``send`` it then, which
        waits, or raises when the connection is gone."""
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
