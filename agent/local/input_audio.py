"""The input audio buffer on its own timeline: appends, speech boundaries, commits, idle.

Positions (``audio_start_ms``, ``audio_end_ms``) are measured on the appended audio's own
timeline, as the real API does, never on the wall clock: the timeline advances by the length
of each appended chunk. The buffer holds what has not been committed yet; the detector
(``server_vad`` turn detection) reports speech boundaries on the same timeline. The idle
timeout counts wall-clock time from when a response's audio has played out, and turns the
silence since then into a turn of its own.

The buffer sends the ``input_audio_buffer.*`` events it can tell alone (speech started and
stopped, cleared, timeout triggered); committing a stretch into the conversation, and what a
boundary does to responses, is the protocol's business.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from agent.audio.codecs import Codec
from agent.audio.pcm import as_int16
from agent.local.client_input import required
from agent.local.events import ProtocolError, new_id
from agent.local.outbox import Outbox
from agent.local.session_state import TurnDetection
from agent.local.vad import VadEvent, VadFactory, VoiceActivityDetector

MIN_COMMIT_MS = 100
"""A manual commit needs at least this much buffered audio, as with the real API."""


@dataclass(frozen=True)
class Span:
    """A stretch of the timeline that becomes the user audio item ``item_id``."""

    item_id: str
    start_ms: float
    end_ms: float


@dataclass(frozen=True)
class _IdleTimer:
    """The ``idle_timeout_ms`` countdown, armed when a response's audio finished playing."""

    deadline: float
    audio_start_ms: float


class InputAudioBuffer:
    """Appended audio not yet committed, its speech detector and the idle countdown."""

    def __init__(
        self, codec: Codec, turn: TurnDetection | None, vad_factory: VadFactory, out: Outbox
    ) -> None:
        self._codec = codec
        self._turn = turn
        self._vad_factory = vad_factory
        self._out = out
        self.timeline_ms = 0.0
        """All the audio ever appended, in ms."""
        self._buffer = bytearray()
        """PCM16 at ``rate``, from ``_buffer_start_ms`` on."""
        self._buffer_start_ms = 0.0
        self._vad: VoiceActivityDetector | None = None
        self._vad_base_ms = 0.0
        """Where the detector's sample 0 is on the timeline."""
        self._speech_item_id: str | None = None
        self._speech_start_ms = 0.0
        self._idle: _IdleTimer | None = None
        self._reset_vad()

    @property
    def rate(self) -> int:
        """The sample rate of the buffered audio (the session's input codec's)."""
        return self._codec.rate

    @property
    def speaking(self) -> bool:
        """True while the detector is inside a turn."""
        return self._vad is not None and self._vad.speaking

    def configure(self, codec: Codec, turn: TurnDetection | None) -> None:
        """Follow the session's input format and turn detection after an update."""
        if (codec, turn) == (self._codec, self._turn):
            return
        if codec != self._codec:
            # A buffer mixing two sample rates means nothing; start afresh at the new rate.
            self._buffer.clear()
            self._buffer_start_ms = self.timeline_ms
        self._codec, self._turn = codec, turn
        self._reset_vad()

    def append(self, event: dict[str, Any]) -> list[VadEvent]:
        """Buffer an ``input_audio_buffer.append``; the speech boundaries it completes, for
        ``speech_started`` and ``speech_stopped`` to place on the timeline one by one."""
        audio = required(event, "audio", str)
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                code="invalid_value",
                param="audio",
            ) from exc
        codec = self._codec
        if len(raw) % codec.sample_bytes:
            raise ProtocolError(
                f"{codec.name} audio must be whole {codec.sample_bytes}-byte samples, "
                f"got {len(raw)} bytes",
                code="invalid_value",
                param="audio",
            )
        pcm = codec.decode(raw)
        self._buffer += pcm
        self.timeline_ms += len(pcm) / 2 * 1000 / self.rate
        return [] if self._vad is None else self._vad.process(as_int16(pcm))

    def speech_started(self, boundary: VadEvent) -> None:
        """Open a turn at ``boundary`` (which already includes the prefix padding)."""
        self._speech_item_id = new_id("item")
        self._speech_start_ms = max(self._on_timeline(boundary), self._buffer_start_ms)
        self._out.send(
            "input_audio_buffer.speech_started",
            audio_start_ms=round(self._speech_start_ms),
            item_id=self._speech_item_id,
        )
        self._idle = None

    def speech_stopped(self, boundary: VadEvent) -> Span:
        """Close the turn at ``boundary``; the span to commit."""
        end_ms = self._on_timeline(boundary)
        item_id = self._speech_item_id or new_id("item")
        self._speech_item_id = None
        self._out.send(
            "input_audio_buffer.speech_stopped", audio_end_ms=round(end_ms), item_id=item_id
        )
        return Span(item_id, self._speech_start_ms, end_ms)

    def commit_all(self) -> Span:
        """The client's ``input_audio_buffer.commit``: everything buffered, as one turn."""
        buffered_ms = len(self._buffer) / 2 * 1000 / self.rate
        if buffered_ms < MIN_COMMIT_MS:
            raise ProtocolError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        span = Span(self._speech_item_id or new_id("item"), self._buffer_start_ms, self.timeline_ms)
        self._reset_vad()
        return span

    def take(self, span: Span) -> bytes:
        """The audio of ``span``, dropped from the buffer with everything before it."""
        begin, end = self._offset(span.start_ms), self._offset(span.end_ms)
        audio = bytes(self._buffer[begin:end])
        del self._buffer[:end]
        self._buffer_start_ms += end / 2 * 1000 / self.rate
        return audio

    def clear(self) -> None:
        """The client's ``input_audio_buffer.clear``: forget the buffer and any open turn."""
        self._buffer.clear()
        self._buffer_start_ms = self.timeline_ms
        self._reset_vad()
        self._out.send("input_audio_buffer.cleared")

    def arm_idle(self, now: float, played_until: float) -> None:
        """Start the idle countdown from ``played_until``, when a response's audio will have
        been played (``now`` or later), if the session asks for an idle timeout."""
        if self._turn is None or self._turn.idle_timeout_ms is None:
            return
        self._idle = _IdleTimer(
            deadline=played_until + self._turn.idle_timeout_ms / 1000,
            audio_start_ms=self.timeline_ms + (played_until - now) * 1000,
        )

    def disarm_idle(self) -> None:
        self._idle = None

    @property
    def idle_deadline(self) -> float | None:
        return self._idle.deadline if self._idle is not None else None

    def idle_timeout(self, now: float) -> Span | None:
        """The silent span to commit if the idle timeout fired at ``now`` (it is then spent)."""
        idle = self._idle
        if idle is None or now < idle.deadline or self.speaking:
            return None
        self._idle = None
        span = Span(new_id("item"), min(idle.audio_start_ms, self.timeline_ms), self.timeline_ms)
        self._out.send(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=round(span.start_ms),
            audio_end_ms=round(span.end_ms),
            item_id=span.item_id,
        )
        return span

    def close(self) -> None:
        """Give the detector back (a pooled model returns to its pool)."""
        if self._vad is not None:
            self._vad.close()
            self._vad = None

    def _reset_vad(self) -> None:
        self.close()
        turn = self._turn
        self._vad = None if turn is None else self._vad_factory(self.rate, turn.vad)
        self._vad_base_ms = self.timeline_ms
        self._speech_item_id = None
        if turn is None or turn.idle_timeout_ms is None:
            self._idle = None

    def _on_timeline(self, boundary: VadEvent) -> float:
        return self._vad_base_ms + boundary.sample * 1000 / self.rate

    def _offset(self, ms: float) -> int:
        samples = round((ms - self._buffer_start_ms) * self.rate / 1000)
        return min(max(samples * 2, 0), len(self._buffer))
