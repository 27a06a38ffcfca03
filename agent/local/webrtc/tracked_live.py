"""A local GPT-Live session over WebRTC: the sans-I/O ``LiveProtocol`` with its audio moved onto
the media tracks, as GPT-Live's own WebRTC sessions have it.

- The HTTP request that creates the session carries its configuration and starts it
  (``LiveProtocol.start_media``): ``session.started`` is the data channel's first event, and a
  ``session.start`` on the channel is refused as on a started WebSocket.
- The protocol's ``session.output_audio.delta`` events do not go on the data channel: their
  audio is queued on the outbound track, which plays it out in real time.
- The caller's track comes in as the protocol's ``session.input_audio.append`` (24 kHz PCM
  inside); an append the client sends on the channel is refused (media transports take their
  audio on the track).
- When the caller starts speaking the protocol stops the agent (server-owned barge-in), and
  what the track still holds is dropped at once: the agent hears the track go quiet. GPT-Live
  has no playout events (Realtime's ``output_audio_buffer.*``) to say so.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from agent.audio.resample import StreamResampler
from agent.local.events import Event, ProtocolError
from agent.local.live.protocol import LiveProtocol
from agent.local.webrtc.tracked import ServerTrack, TrackedSession
from agent.realtime.webrtc.media import TRACK_RATE

_AUDIO_DELTA = "session.output_audio.delta"
_APPEND = "session.input_audio.append"


class TrackedLive(TrackedSession[LiveProtocol]):
    """``LiveProtocol`` over WebRTC (see the module docstring)."""

    def __init__(self, inner: LiveProtocol, session: object, now: float) -> None:
        """Start the session with the creation request's ``session``; raises
        ``ProtocolError`` (nothing started) when the real server would refuse it."""
        started = inner.start_media(session, now)
        codec = inner.input_codec
        assert codec is not None  # started
        super().__init__(inner, ServerTrack(codec.rate))
        self._started = started
        self._codec = codec
        self._down = StreamResampler(TRACK_RATE, codec.rate)
        #: The ``session`` of the request that created the session (tests validate it).
        self.creation = session
        #: PCM16 of the caller's track as the protocol took it (tests read it).
        self.caller_audio = bytearray()
        #: ``(time.monotonic(), samples dropped)`` each time the caller's speech cut the
        #: agent's queued audio off the track (tests read it).
        self.cuts: list[tuple[float, int]] = []

    # -- the SessionProtocol contract ------------------------------------------------------
    def start(self) -> list[Event]:
        started, self._started = self._started, []
        return started

    def receive(self, message: str | bytes, now: float) -> list[Event]:
        event = _json(message)
        if event is not None and event.get("type") == _APPEND:
            err = ProtocolError(
                "A WebRTC session takes the caller's audio on its media track: "
                f"'{_APPEND}' is for a primary WebSocket.",
                code="unsupported_event",
                param="type",
            )
            cid = event.get("event_id")
            return [self.inner.error_event(err, cid if isinstance(cid, str) else None)]
        return self._outgoing(self.inner.receive(message, now))

    # -- the caller's track ----------------------------------------------------------------
    def caller_audio_in(self, pcm: bytes, now: float) -> None:
        """One frame of the caller's track (PCM16 at 48 kHz) into the protocol."""
        if self.inner.ended:
            return
        audio = self._down.process(pcm)
        if not audio:
            return
        self.caller_audio += audio
        append = {
            "type": _APPEND,
            "audio": base64.b64encode(self._codec.encode(audio)).decode("ascii"),
        }
        was_speaking = self.inner.caller_speaking
        events = self.inner.receive(json.dumps(append), now)
        if self.inner.caller_speaking and not was_speaking:
            dropped = self.track.clear()
            if dropped:
                self.cuts.append((time.monotonic(), dropped))
        self._pending += self._outgoing(events)
        if self._pending:
            self._waker()

    # -- the protocol's events -------------------------------------------------------------
    def _outgoing(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if event.get("type") == _AUDIO_DELTA:
                self.track.push(self._codec.decode(base64.b64decode(event["delta"])))
            else:
                out.append(event)
        return out


def _json(message: str | bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(message)
    except (ValueError, TypeError):
        return None
    return parsed if isinstance(parsed, dict) else None
