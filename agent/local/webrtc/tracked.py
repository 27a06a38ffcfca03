"""A local Realtime session over WebRTC: the sans-I/O protocol with its audio moved onto the
media tracks, and the playout events of a WebRTC server.

The protocol keeps speaking as on WebSocket; this wraps it (the ``SessionProtocol`` contract):
- its ``response.output_audio.delta`` events do not go on the data channel: their audio is
  queued on the outbound track, which plays it out in real time;
- ``output_audio_buffer.started`` goes out when a response's audio starts playing,
  ``stopped`` once the response is done and its last frame was sent, ``cleared`` when the
  rest is dropped: on the caller's speech (server VAD interrupts) or on the client's
  ``output_audio_buffer.clear``;
- the caller's track comes in as ``input_audio_buffer.append`` in the session's input format.

Truncation stays the client's: the agent sends ``conversation.item.truncate`` with what the
caller heard, which is less than what this server sent.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from agent.audio.resample import StreamResampler
from agent.local.events import Event, ProtocolError, new_id
from agent.local.protocol import RealtimeProtocol
from agent.realtime.webrtc.media import TRACK_RATE, OutboundAudio

_AUDIO_DELTAS = ("response.output_audio.delta", "response.audio.delta")


def _no_wake() -> None:
    return None


class ServerTrack(OutboundAudio):
    """The outbound track, telling its owner about each frame it sent."""

    def __init__(self, rate: int) -> None:
        super().__init__(rate)
        self.sent: Callable[[int], None] = lambda _samples: None

    def on_frame(self, samples: int) -> None:
        self.sent(samples)


class InnerSession(Protocol):
    """What a tracked session needs of the sans-I/O protocol it wraps."""

    waker: Callable[[], None]

    def poll(self, now: float) -> list[Event]: ...

    def next_deadline(self) -> float | None: ...

    @property
    def ended(self) -> bool: ...

    def close(self) -> None: ...

    def error_event(self, err: ProtocolError, client_event_id: str | None = None) -> Event: ...


Inner = TypeVar("Inner", bound=InnerSession)


class TrackedSession(ABC, Generic[Inner]):
    """The ``SessionProtocol`` contract of a protocol whose audio rides the media tracks:
    what both protocols do the same. ``_outgoing`` takes the audio off the events, and
    events the track's own progress produces wait in ``_pending`` for the next poll."""

    def __init__(self, inner: Inner, track: ServerTrack) -> None:
        self.inner = inner
        self.track = track
        self._waker: Callable[[], None] = _no_wake
        self._pending: list[Event] = []

    @property
    def waker(self) -> Callable[[], None]:
        return self._waker

    @waker.setter
    def waker(self, wake: Callable[[], None]) -> None:
        self._waker = wake
        self.inner.waker = wake

    def poll(self, now: float) -> list[Event]:
        pending, self._pending = self._pending, []
        return pending + self._outgoing(self.inner.poll(now))

    def next_deadline(self) -> float | None:
        return self.inner.next_deadline()

    @property
    def ended(self) -> bool:
        return self.inner.ended

    def close(self) -> None:
        self.track.stop()
        self.inner.close()

    def error_event(self, err: ProtocolError, client_event_id: str | None = None) -> Event:
        return self.inner.error_event(err, client_event_id)

    @abstractmethod
    def _outgoing(self, events: list[Event]) -> list[Event]:
        """``events`` with the protocol's audio moved onto the track."""


class TrackedRealtime(TrackedSession[RealtimeProtocol]):
    """``RealtimeProtocol`` over WebRTC (see the module docstring)."""

    def __init__(self, inner: RealtimeProtocol) -> None:
        super().__init__(inner, ServerTrack(inner.session.output_codec.rate))
        self.track.sent = self._frame_sent
        self._track_rate = inner.session.output_codec.rate
        self._playing: str | None = None  # the response whose audio is on the track
        self._done: set[str] = set()  # responses the protocol finished
        self._dropped: set[str] = set()  # responses whose audio was cleared
        self._down: StreamResampler | None = None
        self._down_rate = 0
        #: PCM16 of the caller's track as the protocol took it (tests read it).
        self.caller_audio = bytearray()

    # -- the SessionProtocol contract ------------------------------------------------------
    def start(self) -> list[Event]:
        return self._outgoing(self.inner.start())

    def receive(self, message: str | bytes, now: float) -> list[Event]:
        event = _json(message)
        if event is not None and event.get("type") == "output_audio_buffer.clear":
            return self.clear_playout()
        return self._outgoing(self.inner.receive(message, now))

    # -- the caller's track ----------------------------------------------------------------
    def caller_audio_in(self, pcm: bytes, now: float) -> None:
        """One frame of the caller's track (PCM16 at 48 kHz) into the protocol."""
        codec = self.inner.session.input_codec
        if self._down is None or self._down_rate != codec.rate:
            self._down, self._down_rate = StreamResampler(TRACK_RATE, codec.rate), codec.rate
        audio = self._down.process(pcm)
        if not audio:
            return
        self.caller_audio += audio
        append = {
            "type": "input_audio_buffer.append",
            "audio": base64.b64encode(codec.encode(audio)).decode("ascii"),
        }
        self._pending += self._outgoing(self.inner.receive(json.dumps(append), now))
        if self._pending:
            self._waker()

    # -- the protocol's events -------------------------------------------------------------
    def _outgoing(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            kind = event.get("type")
            if kind in _AUDIO_DELTAS:
                out += self._play(event)
                continue
            out.append(event)
            if kind == "input_audio_buffer.speech_started" and self._interrupts():
                out += self.clear_playout()
            elif kind == "response.done":
                response = event.get("response")
                if isinstance(response, dict):
                    self._done.add(str(response.get("id", "")))
                    if self._playing is None or self._playing in self._dropped:
                        continue
                    out += self._stopped_if_drained()
        return out

    def _play(self, event: Event) -> list[Event]:
        response_id = str(event.get("response_id", ""))
        if response_id in self._dropped:
            return []
        codec = self.inner.session.output_codec
        if codec.rate != self._track_rate:
            self.track.set_rate(codec.rate)
            self._track_rate = codec.rate
        self.track.push(codec.decode(base64.b64decode(event["delta"])))
        if self._playing == response_id:
            return []
        self._playing = response_id
        return [_buffer_event("output_audio_buffer.started", response_id)]

    def _interrupts(self) -> bool:
        turn = self.inner.session.turn_detection
        return turn is not None and turn.interrupt_response and self._playing is not None

    def clear_playout(self) -> list[Event]:
        """Drop what the track has still to play; the ``cleared`` event, if it played."""
        playing, self._playing = self._playing, None
        self.track.clear()
        if playing is None:
            return []
        self._dropped.add(playing)
        return [_buffer_event("output_audio_buffer.cleared", playing)]

    def _stopped_if_drained(self) -> list[Event]:
        playing = self._playing
        if playing is None or playing not in self._done or self.track.queued_samples:
            return []
        self._playing = None
        return [_buffer_event("output_audio_buffer.stopped", playing)]

    def _frame_sent(self, _samples: int) -> None:
        stopped = self._stopped_if_drained()
        if stopped:
            self._pending += stopped
            self._waker()


def _buffer_event(kind: str, response_id: str) -> Event:
    return {"type": kind, "event_id": new_id("event"), "response_id": response_id}


def _json(message: str | bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(message)
    except (ValueError, TypeError):
        return None
    return parsed if isinstance(parsed, dict) else None
