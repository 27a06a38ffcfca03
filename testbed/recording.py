"""The local realtime server with a record of its traffic, for tests to inspect and provoke.

``RecordingServer`` is a ``LocalRealtimeServer`` whose connections are ``RecordedSession``s:
each keeps the client events it received, the server events it sent, the audio the client
appended (decoded to PCM16, as the protocol decodes it), and can inject a server event or
drop the connection. Production serves without any of this; it only offers the extension
points (``LocalRealtimeServer.open_session``, ``LocalSession.receive`` and ``send``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection

from agent.audio.codecs import Codec
from agent.local.backend import Backend
from agent.local.events import Event, new_id
from agent.local.protocol import RealtimeProtocol
from agent.local.responder import Responder
from agent.local.server import LocalRealtimeServer, LocalSession
from agent.realtime.dialect import Dialect


def appended_audio(message: str | bytes, codec: Codec) -> bytes | None:
    """The PCM16 an ``input_audio_buffer.append`` frame carries in ``codec``, or None when the
    frame is something else or the protocol would refuse it."""
    event = _json_object(message)
    if event is None or event.get("type") != "input_audio_buffer.append":
        return None
    audio = event.get("audio")
    if not isinstance(audio, str):
        return None
    try:
        return codec.decode(base64.b64decode(audio, validate=True))
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

    def __init__(self, protocol: RealtimeProtocol, connection: ServerConnection) -> None:
        super().__init__(protocol, connection)
        self.received: list[dict[str, Any]] = []
        """Client events (the frames that were JSON objects), in order."""
        self.sent: list[Event] = []
        """Every server event, in the order written."""
        self.input_audio = bytearray()
        """Every appended chunk, decoded to PCM16 at the input rate of its time."""
        self.closed = asyncio.Event()

    @property
    def dialect(self) -> Dialect:
        return self.protocol.dialect

    @property
    def input_rate(self) -> int:
        return self.protocol.input_rate

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self.closed.set()

    def receive(self, message: str | bytes, now: float) -> list[Event]:
        pcm = appended_audio(message, self.protocol.session.input_codec)
        if pcm is not None:
            self.input_audio += pcm
        event = _json_object(message)
        if event is not None:
            self.received.append(event)
        return super().receive(message, now)

    def send(self, events: list[Event]) -> None:
        self.sent.extend(events)
        super().send(events)

    async def emit(self, event: dict[str, Any]) -> None:
        """Send an arbitrary server event (stamped with an ``event_id``), after everything
        sent before it."""
        if self.closed.is_set():
            raise ConnectionError("the local realtime session is closed")
        self.send([stamped(event)])
        # Let the writer have it before the test goes on.
        await asyncio.sleep(0)

    async def drop(self, code: int = 1011, reason: str = "server error") -> None:
        """Close this connection from the server side, as a failing cloud service would."""
        await self.connection.close(code, reason)
        await self.closed.wait()


class RecordingServer(LocalRealtimeServer):
    """A local realtime server that keeps every connection's ``RecordedSession``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        backend: Backend | None = None,
        responder_factory: Callable[[], Responder] | None = None,
    ) -> None:
        """``responder_factory`` swaps only the (synthetic) backend's responder."""
        if backend is None and responder_factory is not None:
            backend = Backend("custom", responder_factory)
        super().__init__(host, port, backend=backend)
        self.sessions: list[RecordedSession] = []

    def open_session(
        self, protocol: RealtimeProtocol, connection: ServerConnection
    ) -> RecordedSession:
        session = RecordedSession(protocol, connection)
        self.sessions.append(session)
        return session
