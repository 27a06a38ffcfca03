"""The local server with a record of its traffic, for tests to inspect and provoke.

``RecordingServer`` is a ``LocalRealtimeServer`` whose connections (Realtime, GPT-Live and
Responses alike) are ``RecordedSession``s: each keeps the client events it received, the
server events it sent with the monotonic time each went out, the audio the client appended
(decoded to PCM16, as the protocol decodes it), and can inject a server event or drop the
connection. Production serves without any of this; it only offers the extension points
(``LocalRealtimeServer.open_session``, ``LocalSession.receive``, ``send`` and ``written``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection

from agent.audio.codecs import Codec
from agent.local.backend import Backend
from agent.local.events import Event, new_id
from agent.local.live.protocol import (
    LEAD_MS,
    MAX_SESSION_S,
    TRANSCRIPT_INTERVAL_MS,
    USAGE_INTERVAL_S,
    LiveProtocol,
)
from agent.local.protocol import RealtimeProtocol
from agent.local.responder import Responder
from agent.local.server import LocalRealtimeServer, LocalSession, Service, SessionProtocol
from agent.realtime.dialect import Dialect

REALTIME_APPEND = "input_audio_buffer.append"
LIVE_APPEND = "session.input_audio.append"


def appended_audio(
    message: str | bytes, codec: Codec, event_type: str = REALTIME_APPEND
) -> bytes | None:
    """The PCM16 an audio append frame (``event_type``) carries in ``codec``, or None when the
    frame is something else or the protocol would refuse it."""
    event = _json_object(message)
    if event is None or event.get("type") != event_type:
        return None
    audio = event.get("audio")
    if not isinstance(audio, str):
        return None
    try:
        raw = base64.b64decode(audio, validate=True)
        if len(raw) % codec.sample_bytes:
            return None
        return codec.decode(raw)
    except (binascii.Error, ValueError):
        return None


def _json_object(message: str | bytes) -> dict[str, Any] | None:
    if not isinstance(message, str):
        return None
    try:
        parsed = json.loads(message)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def stamped(event: dict[str, Any]) -> Event:
    """``event`` with a server-shaped ``event_id`` unless it has one."""
    out = {**event}
    out.setdefault("event_id", new_id("event"))
    return out


class RecordedSession(LocalSession):
    """One connection with its traffic on record."""

    def __init__(self, protocol: SessionProtocol, connection: ServerConnection) -> None:
        super().__init__(protocol, connection)
        self.received: list[dict[str, Any]] = []
        """Client events (the frames that were JSON objects), in order."""
        self.received_at: list[float] = []
        """The ``time.monotonic()`` each of ``received`` arrived at, index for index."""
        self.sent: list[Event] = []
        """Every server event, in the order queued (which is the order written)."""
        self.sent_at: list[float] = []
        """The ``time.monotonic()`` each of ``sent`` was handed to the socket, index for
        index; events still queued have none yet, so this may be shorter than ``sent``."""
        self.input_audio = bytearray()
        """Every appended chunk, decoded to PCM16 at the input rate of its time."""
        self.closed = asyncio.Event()

    @property
    def core(self) -> SessionProtocol:
        """The API's protocol (a WebRTC session wraps it: ``agent.local.webrtc.tracked``)."""
        return getattr(self.protocol, "inner", self.protocol)

    @property
    def service(self) -> Service:
        if isinstance(self.core, RealtimeProtocol):
            return Service.REALTIME
        if isinstance(self.core, LiveProtocol):
            return Service.LIVE
        return Service.RESPONSES

    @property
    def dialect(self) -> Dialect | None:
        """The Realtime dialect (None on GPT-Live and Responses connections)."""
        core = self.core
        return core.dialect if isinstance(core, RealtimeProtocol) else None

    @property
    def input_rate(self) -> int:
        core = self.core
        if isinstance(core, RealtimeProtocol | LiveProtocol):
            return core.input_rate
        raise TypeError("a Responses connection takes no audio")

    def sent_log(self) -> list[tuple[float, Event]]:
        """The events written so far, each with the monotonic time it went out."""
        return list(zip(self.sent_at, self.sent, strict=False))

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self.closed.set()

    def receive(self, message: str | bytes, now: float) -> list[Event]:
        pcm = self._appended(message)
        if pcm is not None:
            self.input_audio += pcm
        event = _json_object(message)
        if event is not None:
            self.received.append(event)
            self.received_at.append(time.monotonic())
        return super().receive(message, now)

    def send(self, events: list[Event]) -> None:
        self.sent.extend(events)
        super().send(events)

    def written(self, event: Event, at: float) -> None:
        self.sent_at.append(at)
        super().written(event, at)

    async def emit(self, event: dict[str, Any]) -> None:
        """Send an arbitrary server event after everything sent before it, stamped with an
        ``event_id`` where the API's events have one (Realtime, GPT-Live)."""
        if self.closed.is_set():
            raise ConnectionError("the local realtime session is closed")
        self.send([event if self.service is Service.RESPONSES else stamped(event)])
        # Let the writer have it before the test goes on.
        await asyncio.sleep(0)

    async def drop(self, code: int = 1011, reason: str = "server error") -> None:
        """Close this connection from the server side, as a failing cloud service would."""
        await self.connection.close(code, reason)
        await self.closed.wait()

    def _appended(self, message: str | bytes) -> bytes | None:
        protocol = self.core
        if isinstance(protocol, RealtimeProtocol):
            return appended_audio(message, protocol.session.input_codec)
        if isinstance(protocol, LiveProtocol) and protocol.input_codec is not None:
            return appended_audio(message, protocol.input_codec, LIVE_APPEND)
        return None


class RecordingServer(LocalRealtimeServer):
    """A local server that keeps every connection's ``RecordedSession``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        backend: Backend | None = None,
        responder_factory: Callable[[], Responder] | None = None,
        live_lead_ms: int = LEAD_MS,
        live_max_session_s: float = MAX_SESSION_S,
        live_usage_interval_s: float = USAGE_INTERVAL_S,
        live_transcript_interval_ms: int = TRANSCRIPT_INTERVAL_MS,
        webrtc: bool = False,
    ) -> None:
        """``responder_factory`` swaps only the (synthetic) backend's responder; ``webrtc``
        also serves the WebRTC calls endpoint (its sessions are recorded alike)."""
        if backend is None and responder_factory is not None:
            backend = Backend("custom", responder_factory)
        super().__init__(
            host,
            port,
            backend=backend,
            live_lead_ms=live_lead_ms,
            live_max_session_s=live_max_session_s,
            live_usage_interval_s=live_usage_interval_s,
            live_transcript_interval_ms=live_transcript_interval_ms,
            webrtc=webrtc,
        )
        self.sessions: list[RecordedSession] = []

    def open_session(
        self, protocol: SessionProtocol, connection: ServerConnection
    ) -> RecordedSession:
        session = RecordedSession(protocol, connection)
        self.sessions.append(session)
        return session
