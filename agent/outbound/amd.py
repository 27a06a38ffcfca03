"""Answering-machine detection: human, machine or unknown from the callee's first seconds.

Contract
--------

An ``AnsweringMachineDetector`` is fed and asked; it never reads a clock or a socket.

- Build one per outbound call at the answer, with the call's ``AmdSettings`` and sample rate
  (8000 or 16000). Its timeline is milliseconds after the answer, counted on the audio fed.
- ``frame(pcm)`` takes the callee's next frame (PCM16 mono at the call's rate, normally
  20 ms; any whole number of samples) and returns what that audio decided.
- ``tick(at_ms)`` says the wall clock reached ``at_ms`` after the answer. When the line has
  sent no audio for more than ``LINE_GAP_MS`` (a callee with silence suppression sends
  nothing while quiet, RTP may stall), the missing audio counts as silence, so every verdict
  and wait is bounded in time even then.
- Both return ``AmdEvent``s in order: first one ``Verdict`` (human, machine or unknown, with
  ``decided_ms`` and why); after a machine verdict, one ``GreetingEnded`` (by the "beep", by
  "silence", or "timeout" after ``beep_wait_ms``), which is when a message can be left.
  Nothing follows a human or unknown verdict or a ``GreetingEnded``: ``done`` is then True,
  and further input is ignored.
- ``record`` is the decision for the call record (``verdict``, ``decided_ms``, ``reason``,
  ``beep_ms``, ``beep_hz``, ``greeting_end``, ``greeting_end_ms``), None before a verdict.

States
------

``LISTENING`` (no speech yet) -> ``GREETING`` at the first word (``WORD_MS`` of consecutive
speech frames). In ``GREETING``: ``human_silence_ms`` of silence after less than
``machine_speech_ms`` of greeting is a person (a "hello?" and a pause); the greeting (words
with shorter silences between them) reaching ``machine_speech_ms`` is a machine. In either
state ``max_detect_ms`` without a verdict is "unknown", and a beep is a machine.
A machine verdict -> ``AWAIT_END``: a beep (a steady 400-2000 Hz tone ``beep_min_ms`` long)
-> ``BEEP`` until the tone stops; or ``end_silence_ms`` of silence; or ``beep_wait_ms`` after
the verdict -> ``DONE``.

Signals
-------

Speech is frame energy, not Silero: what decides here is only where the callee's sound and
silences lie on 20 ms frames, which energy measures at once and exactly, with no model per
call (and no resampling of 16 kHz calls); a neural VAD would also call the beep non-speech,
while here it is sound that keeps a greeting going until the tone detector names it. A frame
is speech at ``speech_dbfs`` or louder and ``speech_snr_db`` above the line's noise floor: the
10th percentile of the last 2 s of frame levels, so steady line noise or hum is not speech,
while speech's own dips between syllables and words keep the floor down (a percentile, not
the minimum, so one lost packet's digital silence does not make the floor vanish).

The beep is a frame whose spectrum is one peak: at least ``TONE_PURITY`` of its energy within
two bins (+-100 Hz) of the strongest, between ``BEEP_MIN_HZ`` and ``BEEP_MAX_HZ``, frame
after frame at the same pitch. A voice's energy spreads over many harmonics, with its
strongest below 400 Hz.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.audio.levels import rms_dbfs
from agent.outbound.amd_settings import AmdSettings

HUMAN = "human"
MACHINE = "machine"
UNKNOWN = "unknown"

#: How the machine's greeting was found to end.
BY_BEEP = "beep"
BY_SILENCE = "silence"
BY_TIMEOUT = "timeout"

FRAME_MS = 20
#: Audio missing for longer than this (by ``tick``) counts as silence.
LINE_GAP_MS = 200
#: Consecutive speech this long is a word: rejects clicks and single-frame pops.
WORD_MS = 60
#: The noise floor's window and percentile.
FLOOR_WINDOW_MS = 2000
FLOOR_PERCENTILE = 10.0
BEEP_MIN_HZ = 400.0
BEEP_MAX_HZ = 2000.0
#: Share of a frame's energy near its spectral peak that makes it a pure tone.
TONE_PURITY = 0.8
#: Frames of one beep may differ this much in pitch (1.5 FFT bins of a 20 ms frame).
BEEP_PITCH_TOLERANCE_HZ = 75.0
#: A tone longer than this is taken to have ended (the wait is bounded even on a stuck tone).
BEEP_MAX_MS = 4000

LISTENING = "listening"
GREETING = "greeting"
AWAIT_END = "await_end"
BEEP = "beep"
DONE = "done"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Who answered: ``verdict`` is HUMAN, MACHINE or UNKNOWN, ``decided_ms`` after the
    answer, ``reason`` in words for the log."""

    verdict: str
    decided_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class GreetingEnded:
    """The machine's greeting is over (``how``: beep, silence or timeout) at ``at_ms``: a
    message left now is recorded. ``beep_ms`` is where the beep began, when there was one."""

    how: str
    at_ms: int
    beep_ms: int | None = None
    beep_hz: float | None = None


AmdEvent = Verdict | GreetingEnded


@dataclass
class _ToneRun:
    """Consecutive pure-tone frames at one pitch."""

    start_ms: int
    hz: float
    ms: int = 0


class AnsweringMachineDetector:
    """One outbound call's answering-machine detection (see the module's contract)."""

    def __init__(self, settings: AmdSettings, rate: int) -> None:
        if rate <= 0 or rate * FRAME_MS % 1000:
            raise ValueError(f"need a sample rate with whole 20 ms frames, got {rate}")
        self.settings = settings
        self.rate = rate
        self.state = LISTENING
        self._frame = rate * FRAME_MS // 1000
        self._window = np.hanning(self._frame)
        self._pending = np.zeros(0, dtype=np.int16)
        self._pos_ms = 0
        self._levels: deque[float] = deque(maxlen=FLOOR_WINDOW_MS // FRAME_MS)
        self._voiced_ms = 0
        self._greeting_start: int | None = None
        self._voice_end = 0
        self._tone: _ToneRun | None = None
        self._beep: _ToneRun | None = None
        self.verdict: Verdict | None = None
        self.greeting_end: GreetingEnded | None = None

    @property
    def done(self) -> bool:
        return self.state == DONE

    @property
    def position_ms(self) -> int:
        """How far the detector's timeline has come, in ms after the answer."""
        return self._pos_ms

    @property
    def record(self) -> dict[str, Any] | None:
        verdict = self.verdict
        if verdict is None:
            return None
        end = self.greeting_end
        beep = self._beep
        return {
            "verdict": verdict.verdict,
            "decided_ms": verdict.decided_ms,
            "reason": verdict.reason,
            "beep_ms": beep.start_ms if beep is not None else None,
            "beep_hz": round(beep.hz) if beep is not None else None,
            "greeting_end": end.how if end is not None else None,
            "greeting_end_ms": end.at_ms if end is not None else None,
        }

    def frame(self, pcm: bytes) -> list[AmdEvent]:
        """The callee's next audio (PCM16 LE mono at the call's rate)."""
        events: list[AmdEvent] = []
        if self.done:
            return events
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        data = np.concatenate([self._pending, samples])
        whole = len(data) // self._frame * self._frame
        for offset in range(0, whole, self._frame):
            self._analyse(data[offset : offset + self._frame], events)
            if self.done:
                break
        self._pending = data[whole:].copy()
        return events

    def tick(self, at_ms: float) -> list[AmdEvent]:
        """The wall clock is at ``at_ms`` after the answer: missing audio is silence."""
        events: list[AmdEvent] = []
        if self.done or at_ms - self._pos_ms <= LINE_GAP_MS:
            return events
        self._voiced_ms = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self._tone_broken(self._pos_ms, events)
        self._pos_ms = int(at_ms)
        if not self.done:
            self._decide(events)
        return events

    # -- one 20 ms frame ---------------------------------------------------------------------
    def _analyse(self, frame: np.ndarray, events: list[AmdEvent]) -> None:
        start = self._pos_ms
        self._pos_ms += FRAME_MS
        level = rms_dbfs(frame.tobytes())
        self._levels.append(level)
        floor = float(np.percentile(np.fromiter(self._levels, float), FLOOR_PERCENTILE))
        voiced = level >= max(self.settings.speech_dbfs, floor + self.settings.speech_snr_db)
        if voiced:
            self._voiced_ms += FRAME_MS
            if self._voiced_ms >= WORD_MS:
                if self._greeting_start is None:
                    self._greeting_start = self._pos_ms - self._voiced_ms
                    if self.state == LISTENING:
                        self.state = GREETING
                self._voice_end = self._pos_ms
        else:
            self._voiced_ms = 0
        hz = self._tone_hz(frame) if voiced else None
        self._follow_tone(hz, start, events)
        if not self.done:
            self._decide(events)

    def _follow_tone(self, hz: float | None, start: int, events: list[AmdEvent]) -> None:
        run = self._tone
        if hz is not None and run is not None and abs(hz - run.hz) <= BEEP_PITCH_TOLERANCE_HZ:
            run.ms += FRAME_MS
        else:
            self._tone_broken(start, events)
            if self.done:
                return
            self._tone = _ToneRun(start, hz) if hz is not None else None
            run = self._tone
            if run is not None:
                run.ms = FRAME_MS
        if run is None or run.ms < self.settings.beep_min_ms or self._beep is not None:
            return
        self._beep = run
        if self.state in (LISTENING, GREETING):
            self._decided(MACHINE, "beep", events)
        self.state = BEEP

    def _tone_broken(self, at_ms: int, events: list[AmdEvent]) -> None:
        """The tone being followed stopped at ``at_ms``: a beep's end ends the greeting."""
        if self.state == BEEP and self._tone is self._beep:
            self._ended(BY_BEEP, at_ms, events)
        self._tone = None

    def _decide(self, events: list[AmdEvent]) -> None:
        settings = self.settings
        now = self._pos_ms
        if self.state == GREETING and self._greeting_start is not None:
            if self._voice_end - self._greeting_start >= settings.machine_speech_ms:
                self._decided(
                    MACHINE, f"greeting longer than {settings.machine_speech_ms} ms", events
                )
            elif now - self._voice_end >= settings.human_silence_ms:
                spoke = self._voice_end - self._greeting_start
                self._decided(HUMAN, f"{spoke} ms of greeting, then silence", events)
        if self.state in (LISTENING, GREETING) and now >= settings.max_detect_ms:
            why = "no speech" if self.state == LISTENING else "no pause in the greeting yet"
            self._decided(UNKNOWN, f"{why} within {settings.max_detect_ms} ms", events)
        if self.state == AWAIT_END:
            verdict = self.verdict
            assert verdict is not None
            if now - max(self._voice_end, verdict.decided_ms) >= settings.end_silence_ms:
                self._ended(BY_SILENCE, now, events)
            elif now - verdict.decided_ms >= settings.beep_wait_ms:
                self._ended(BY_TIMEOUT, now, events)
        elif self.state == BEEP:
            beep = self._beep
            assert beep is not None
            if now - beep.start_ms >= BEEP_MAX_MS:
                self._ended(BY_BEEP, now, events)

    def _decided(self, verdict: str, reason: str, events: list[AmdEvent]) -> None:
        self.verdict = Verdict(verdict, self._pos_ms, reason)
        events.append(self.verdict)
        self.state = AWAIT_END if verdict == MACHINE else DONE

    def _ended(self, how: str, at_ms: int, events: list[AmdEvent]) -> None:
        beep = self._beep
        self.greeting_end = GreetingEnded(
            how,
            at_ms,
            beep.start_ms if beep is not None else None,
            round(beep.hz, 1) if beep is not None else None,
        )
        events.append(self.greeting_end)
        self.state = DONE

    def _tone_hz(self, frame: np.ndarray) -> float | None:
        """The frame's pitch when it is a pure tone in the beep's range, else None."""
        power = np.abs(np.fft.rfft(frame.astype(np.float64) * self._window)) ** 2
        total = float(power.sum())
        if total <= 0.0:
            return None
        peak = int(np.argmax(power[1:])) + 1
        near = float(power[max(peak - 2, 0) : peak + 3].sum())
        if near < TONE_PURITY * total:
            return None
        hz = peak * self.rate / self._frame + _peak_offset(power, peak) * self.rate / self._frame
        return hz if BEEP_MIN_HZ <= hz <= BEEP_MAX_HZ else None


def _peak_offset(power: np.ndarray, peak: int) -> float:
    """Where between bins the peak lies (parabolic interpolation of log power), -0.5..0.5."""
    if peak <= 0 or peak >= len(power) - 1:
        return 0.0
    left, mid, right = (float(np.log(power[i] + 1e-12)) for i in (peak - 1, peak, peak + 1))
    bend = left - 2 * mid + right
    return 0.0 if bend == 0 else max(-0.5, min(0.5, 0.5 * (left - right) / bend))
