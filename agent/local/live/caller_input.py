"""The caller's audio in a GPT-Live session: appended frames decoded in the session's format,
silenced while muted, run through the backend's VAD, and cut into turns with their audio.

Live has no input buffer to commit and no turn detection settings: the server alone decides
when the caller's turn starts and ends, so the detector runs on every appended frame with
fixed settings. Positions are on the input audio timeline (ms of audio appended since the
session started), never on the clock, as the realtime protocol measures them, so turns are
reproducible from the audio alone; a client streaming in real time sees the two agree.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from agent.audio.codecs import Codec
from agent.audio.pcm import as_int16
from agent.local.events import ProtocolError
from agent.local.vad import VadConfig, VadFactory, VoiceActivityDetector

LIVE_VAD = VadConfig(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500)
"""Live's turn detection is not configurable; these are the realtime API's defaults with a
silence long enough for a caller's pauses between phrases."""
MAX_APPEND_CHARS = 2**20
"""A frame's base64 audio beyond this is refused (the server's frame limit is the same)."""
MAX_TURN_S = 60
"""A turn keeps at most its last minute of audio, bounding a call's memory whatever comes in."""
_PRE_ROLL_MARGIN_S = 1.0
"""Audio kept before a turn beyond the prefix padding: a detector may report the start of a
turn a little after it began (onset debounce, model windows)."""


@dataclass(frozen=True)
class SpeechStarted:
    """The caller started speaking at ``start_ms`` (the prefix padding included)."""

    start_ms: float


@dataclass(frozen=True)
class Turn:
    """A finished caller turn: its span on the input timeline and its audio."""

    start_ms: float
    end_ms: float
    audio: bytes
    """PCM16 at the session's rate; the last ``MAX_TURN_S`` of a longer turn."""
    rate: int


class CallerInput:
    """The appended audio of one session and its turns."""

    def __init__(self, codec: Codec, vad_factory: VadFactory) -> None:
        self.codec = codec
        self.rate = codec.rate
        self.muted = False
        """While muted, appended audio counts as silence (the caller cannot start a turn)."""
        self._vad: VoiceActivityDetector | None = vad_factory(self.rate, LIVE_VAD)
        self._samples = 0
        """Samples appended so far: the input timeline's end."""
        self._buffer = bytearray()
        """PCM16 from sample ``_buffer_start`` to the end: a turn so far, or the pre-roll."""
        self._buffer_start = 0
        self._turn_start: int | None = None
        self._pre_roll = self.rate * LIVE_VAD.prefix_padding_ms // 1000 + int(
            self.rate * _PRE_ROLL_MARGIN_S
        )

    @property
    def timeline_ms(self) -> float:
        """All the audio appended so far, in ms."""
        return self._ms(self._samples)

    @property
    def speaking(self) -> bool:
        """True while the caller's turn is open."""
        return self._turn_start is not None

    @property
    def turn_ms(self) -> float:
        """How long the open turn has been going, in ms of audio (0 when none is open)."""
        return 0.0 if self._turn_start is None else self._ms(self._samples - self._turn_start)

    def turn_audio(self) -> bytes:
        """The open turn's audio so far (empty when the caller is not speaking)."""
        if self._turn_start is None:
            return b""
        return bytes(self._buffer[self._offset(self._turn_start) :])

    def append(self, audio: object) -> list[SpeechStarted | Turn]:
        """Take a ``session.input_audio.append``'s ``audio``; the turn boundaries it completes,
        in order. ProtocolError (and nothing taken) if the audio is not whole samples of
        base64 in the session's format."""
        pcm = self._decode(audio)
        if self.muted:
            pcm = bytes(len(pcm))
        self._buffer += pcm
        self._samples += len(pcm) // 2
        boundaries: list[SpeechStarted | Turn] = []
        if self._vad is not None:
            for found in self._vad.process(as_int16(pcm)):
                if found.kind == "start":
                    self._turn_start = max(found.sample, self._buffer_start)
                    boundaries.append(SpeechStarted(self._ms(self._turn_start)))
                elif self._turn_start is not None:
                    boundaries.append(self._end_turn(found.sample))
        self._trim()
        return boundaries

    def close(self) -> None:
        """Give the detector back (a pooled model returns to its pool)."""
        if self._vad is not None:
            self._vad.close()
            self._vad = None

    def _decode(self, audio: object) -> bytes:
        if not isinstance(audio, str):
            raise ProtocolError(
                "Invalid type for 'audio': expected a base64 string.",
                code="invalid_type",
                param="audio",
            )
        if len(audio) > MAX_APPEND_CHARS:
            raise ProtocolError(
                f"Invalid 'audio': at most {MAX_APPEND_CHARS} base64 characters per event, got "
                f"{len(audio)}; append audio in short frames.",
                code="string_above_max_length",
                param="audio",
            )
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                code="invalid_value",
                param="audio",
            ) from exc
        if len(raw) % self.codec.sample_bytes:
            raise ProtocolError(
                f"Invalid 'audio': {self.codec.name} audio must be whole "
                f"{self.codec.sample_bytes}-byte samples, got {len(raw)} bytes.",
                code="invalid_value",
                param="audio",
            )
        return self.codec.decode(raw)

    def _end_turn(self, stop: int) -> Turn:
        assert self._turn_start is not None
        start, self._turn_start = self._turn_start, None
        audio = bytes(self._buffer[self._offset(start) : self._offset(stop)])
        return Turn(self._ms(start), self._ms(stop), audio, self.rate)

    def _trim(self) -> None:
        """Drop audio no turn can need: before the open turn's last minute, or before the
        pre-roll when no turn is open."""
        if self._turn_start is not None:
            keep_from = max(self._turn_start, self._samples - MAX_TURN_S * self.rate)
        else:
            keep_from = self._samples - self._pre_roll
        if keep_from > self._buffer_start:
            del self._buffer[: self._offset(keep_from)]
            self._buffer_start = keep_from

    def _offset(self, sample: int) -> int:
        return min(max(sample - self._buffer_start, 0) * 2, len(self._buffer))

    def _ms(self, sample: int) -> float:
        return sample * 1000 / self.rate
