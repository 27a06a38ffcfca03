"""The GPT-Live protocol adapter: the primary WebSocket's events to the bridge's typed events,
and the bridge's requests to GPT-Live client events.

GPT-Live has no responses, items or output-done events: the model listens and speaks at the
same time and its server owns turn-taking. The bridge's vocabulary is kept by numbering turns
here: an agent turn is the agent's audio and transcript from its first delta until the
caller's transcript begins; a caller turn is the caller's transcript from its first delta
until the agent speaks again. Closing an agent turn gives the bridge its ``AudioDone``,
``TranscriptDone`` and ``ResponseDone``; closing a caller turn its ``CallerTranscript``.
Each caller transcript delta is also a ``CallerHeard``: the server's only sign that it heard
the caller (what the bridge's barge-in acts on).

Requests GPT-Live has no place for produce no message: truncation and cancel (its server
owns the conversation), a format change (the format is fixed at start) and a bare response
request (the model answers on its own). Instructions for a response (the greeting) and notes
(the keys the caller pressed) become ``session.instructions.append``; delegation results
``session.commentary.append`` (spoken) or ``session.thinking.append`` (silent).

Over WebRTC (``webrtc=True``) the HTTP request that creates the session carries its
configuration (``creation``; nothing is sent for it on the data channel, and no audio
format: the media negotiates Opus), and the model's audio comes on the media track with no
ids and no playout events. ``track_audio`` then decides what is the agent's: a frame above
``TRACK_SILENCE_DBFS`` is the model talking (opening an agent turn as a delta would); quiet
frames inside a turn are kept for ``TRACK_PAUSE_MS`` (a pause between words keeps its time)
but marked unvoiced; longer quiet is the silence a track carries between turns, and dropped.
The track lags the data channel (aiortc's receiver holds 80 ms before it plays a frame): when
the caller's transcript closes an agent turn, the next ``TRACK_LAG_MS`` of the track were sent
before the server heard the caller, and are dropped with the turn (the bridge cuts at the
transcript itself over WebRTC, see ``barge_in.WEBRTC_YIELD_GAP_MS``); voiced audio after that
is the model talking on (over a backchannel) and opens a new turn.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from typing import Any

from agent.audio.codecs import TRACK_PCM16
from agent.audio.levels import rms_dbfs
from agent.bridge.adapter import MalformedEvent
from agent.bridge.events import (
    AudioDelta,
    AudioDone,
    CallerHeard,
    CallerTranscript,
    DelegationRequested,
    ResponseCreated,
    ResponseDone,
    ServerError,
    ServerEvent,
    SessionClosed,
    SessionReady,
    TranscriptDelta,
    TranscriptDone,
    UsageUpdated,
)
from agent.bridge.requests import (
    AppendAudio,
    ClientRequest,
    CloseSession,
    ConfigureSession,
    CreateItem,
    CreateResponse,
    DelegationResult,
    Message,
)
from agent.live.session_start import AUDIO_FORMATS, codec_of, session_body

#: Each adapter (one per session) numbers its turns under its own prefix, so the ids of a
#: replacement session's turns never meet the old one's in the bridge.
_SESSIONS = itertools.count(1)
#: WebRTC: a track frame louder than this is the model talking (Opus's silence decodes to
#: well below it; speech, even a soft consonant, is well above).
TRACK_SILENCE_DBFS = -60.0
#: WebRTC: quiet inside an agent turn up to this long is a pause of its speech, and played.
TRACK_PAUSE_MS = 300.0
#: WebRTC: how far the track lags the data channel (aiortc's jitter buffer prefetches four
#: 20 ms frames), with two frames' margin.
TRACK_LAG_MS = 120.0


def _text(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str):
        raise MalformedEvent(str(event.get("type")), f"{key!r} is missing or not a string")
    return value


def _table(event: dict[str, Any], key: str) -> dict[str, Any]:
    value = event.get(key)
    if not isinstance(value, dict):
        raise MalformedEvent(str(event.get("type")), f"{key!r} is missing or not an object")
    return value


def _usage(event: dict[str, Any]) -> dict[str, float]:
    usage = _table(event, "usage")
    numbers = {
        key: float(value)
        for key, value in usage.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    if "seconds" not in numbers:
        raise MalformedEvent(str(event["type"]), "'usage.seconds' is missing")
    return numbers


class LiveAdapter:
    """One GPT-Live session's protocol, both ways."""

    def __init__(self, webrtc: bool = False) -> None:
        self.webrtc = webrtc
        self._quiet_ms = 0.0  # WebRTC: quiet track audio since the model's last voiced frame
        self._lag_ms = 0.0  # WebRTC: track audio still to drop with a turn the caller ended
        self._prefix = f"live{next(_SESSIONS)}"
        self._turns = itertools.count(1)
        self._events = itertools.count(1)
        self._agent_turn: str | None = None
        self._caller_turn: str | None = None
        self._caller_text = ""
        self._requested_codec: str | None = None

    # -- server -> bridge -----------------------------------------------------------------
    def parse(self, message: str | bytes) -> list[ServerEvent]:
        try:
            event = json.loads(message)
        except (ValueError, TypeError):
            return []
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return []
        try:
            return self._parse(event)
        except MalformedEvent:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedEvent(event["type"], repr(exc)) from None

    def _parse(self, event: dict[str, Any]) -> list[ServerEvent]:
        kind = event["type"]
        if kind == "session.output_audio.delta":
            try:
                audio = base64.b64decode(_text(event, "delta"), validate=True)
            except (binascii.Error, ValueError):
                raise MalformedEvent(kind, "the audio is not valid base64") from None
            events = self._agent_speaks()
            turn = self._agent_turn or ""
            return [*events, AudioDelta(turn, turn, audio)]
        if kind == "session.output_transcript.delta":
            events = self._agent_speaks()
            return [*events, TranscriptDelta(self._agent_turn or "", _text(event, "delta"))]
        if kind == "session.input_transcript.delta":
            delta = _text(event, "delta")
            events = self._close_agent_turn()
            if events and self.webrtc:
                self._lag_ms = TRACK_LAG_MS
            if self._caller_turn is None:
                self._caller_turn = f"{self._prefix}_caller_{next(self._turns)}"
                self._caller_text = ""
            self._caller_text += delta
            return [*events, CallerHeard(self._caller_turn, self._caller_text.strip())]
        if kind == "session.delegation.created":
            delegation = _table(event, "delegation")
            return [DelegationRequested(_text(delegation, "id"), self._caller_text.strip())]
        if kind == "session.started":
            return self._started(event)
        if kind == "session.usage.updated":
            return [UsageUpdated(_usage(event))]
        if kind == "session.closed":
            final: list[ServerEvent] = []
            if isinstance(event.get("usage"), dict):
                final.append(UsageUpdated(_usage(event)))
            return [*final, *self._close_agent_turn(), SessionClosed(_text(event, "reason"))]
        if kind == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            assert isinstance(error, dict)
            code, text, ref = error.get("code"), error.get("message"), error.get("client_event_id")
            return [
                ServerError(
                    str(code) if code is not None else None,
                    str(text) if text is not None else None,
                    str(ref) if ref is not None else None,
                )
            ]
        return []

    def _started(self, event: dict[str, Any]) -> list[ServerEvent]:
        session = _table(event, "session")
        audio = session.get("audio")
        echoed = codec_of(audio.get("format")) if isinstance(audio, dict) else None
        expires = session.get("expires_at")
        ready = SessionReady(
            float(expires)
            if isinstance(expires, int | float) and not isinstance(expires, bool)
            else None
        )
        if echoed is not None and self._requested_codec not in (None, echoed):
            # The server chose another format than the call's: the audio would be noise.
            problem = f"asked for {self._requested_codec} audio, the session has {echoed}"
            return [ServerError("audio_format_mismatch", problem), ready]
        return [ready]

    def _agent_speaks(self) -> list[ServerEvent]:
        """Agent output: a new agent turn unless one is open (closing the caller's turn)."""
        if self._agent_turn is not None:
            return []
        events: list[ServerEvent] = []
        if self._caller_turn is not None:
            events.append(CallerTranscript(self._caller_turn, self._caller_text.strip()))
            self._caller_turn = None
            self._caller_text = ""
        self._agent_turn = f"{self._prefix}_agent_{next(self._turns)}"
        return [*events, ResponseCreated(self._agent_turn)]

    def _close_agent_turn(self) -> list[ServerEvent]:
        turn, self._agent_turn = self._agent_turn, None
        if turn is None:
            return []
        return [AudioDone(turn), TranscriptDone(turn, None), ResponseDone(turn)]

    def track_audio(self, audio: bytes) -> list[ServerEvent]:
        """WebRTC: one frame of the model's track (PCM16 at 48 kHz) as agent audio, or
        nothing for the silence between its turns (see the module docstring)."""
        if not audio:
            return []
        frame_ms = len(audio) * 1000 / (TRACK_PCM16.rate * TRACK_PCM16.sample_bytes)
        if self._lag_ms > 0:
            self._lag_ms -= frame_ms
            return []
        voiced = rms_dbfs(audio) > TRACK_SILENCE_DBFS
        if voiced:
            self._quiet_ms = 0.0
        else:
            self._quiet_ms += frame_ms
            if self._agent_turn is None or self._quiet_ms > TRACK_PAUSE_MS:
                return []
        events = self._agent_speaks()
        turn = self._agent_turn or ""
        return [*events, AudioDelta(turn, turn, audio, voiced=voiced)]

    # -- bridge -> server -----------------------------------------------------------------
    def creation(self, requests: list[ClientRequest]) -> dict[str, Any] | None:
        """WebRTC: the session configuration the SDP exchange carries (the session's
        ``ConfigureSession`` among ``requests``); None over WebSocket (``session.start``)."""
        if not self.webrtc:
            return None
        for request in requests:
            if isinstance(request, ConfigureSession):
                return session_body(request.spec, media=True)
        return None

    def encode(self, request: ClientRequest) -> list[str]:
        if isinstance(request, AppendAudio) and not self.webrtc:
            # Built by hand: this runs every 20 ms per call.
            payload = base64.b64encode(request.audio).decode("ascii")
            return ['{"type":"session.input_audio.append","audio":"' + payload + '"}']
        return [json.dumps(event, separators=(",", ":")) for event in self.wire(request)]

    def wire(self, request: ClientRequest) -> list[dict[str, Any]]:
        if isinstance(request, ConfigureSession):
            if self.webrtc:
                return []  # the SDP exchange carried it (``creation``) and started the session
            if request.spec.codec not in AUDIO_FORMATS:
                raise ValueError(f"GPT-Live has no {request.spec.codec!r} audio format")
            self._requested_codec = request.spec.codec
            body = session_body(request.spec)
            return [{"type": "session.start", "event_id": self._event_id(), "session": body}]
        if isinstance(request, AppendAudio):
            if self.webrtc:
                return []  # the caller's audio rides the media track
            audio = base64.b64encode(request.audio).decode("ascii")
            return [{"type": "session.input_audio.append", "audio": audio}]
        if isinstance(request, CreateResponse):
            if request.instructions is None:
                return []  # GPT-Live answers on its own
            return [self._append("session.instructions.append", request.instructions, None)]
        if isinstance(request, CreateItem):
            if isinstance(request.item, Message):
                return [self._append("session.instructions.append", request.item.text, None)]
            return []  # function outputs go back as delegation results; no MCP here
        if isinstance(request, DelegationResult):
            kind = "session.commentary.append" if request.spoken else "session.thinking.append"
            return [self._append(kind, request.text, request.delegation_id)]
        if isinstance(request, CloseSession):
            return [{"type": "session.close", "event_id": self._event_id()}]
        # SetAudioFormat, Truncate, CancelResponse: GPT-Live has no such thing.
        return []

    def _append(self, kind: str, content: str, delegation_id: str | None) -> dict[str, Any]:
        # ``delegation_id`` is required even when null (session-wide context).
        return {
            "type": kind,
            "event_id": self._event_id(),
            "delegation_id": delegation_id,
            "content": content,
        }

    def _event_id(self) -> str:
        return f"{self._prefix}_evt_{next(self._events)}"
