"""No dead air while a tool runs, without I/O: when to fill the wait, and the sound to fill it.

A caller hearing nothing for a few seconds thinks the line is dead. When the model's tool
calls are still running ``after_ms`` after the first began and nobody is speaking, the caller
hears a filler until a result is ready: ``"tone"``, a soft thinking sound made here and
queued in the playout under its own item (so dropping it leaves the agent's audio alone),
or ``"spoken"``, one short holding line the model is asked for (once per wait; never cut,
since half a "one moment" is worse than all of it).
"""

from __future__ import annotations

import numpy as np

from agent.audio.levels import FULL_SCALE
from agent.audio.pcm import to_bytes

TONE = "tone"
SPOKEN = "spoken"
#: The playout item of the thinking sound.
FILLER_ITEM = "filler:tool"
HOLDING_LINE = (
    "A tool you called is still working. Tell the caller in a few words that you are on it "
    "(for example: one moment, please). Do not guess the result and do not call a tool."
)
#: One period of the thinking sound: two soft notes rising a fifth, then a pause.
_NOTES_HZ = (392.0, 587.3)
_NOTE_MS = 180
_PERIOD_MS = 1400
_LEVEL_DBFS = -30.0


def thinking_sound(rate: int) -> bytes:
    """One period of the thinking sound at ``rate`` Hz (PCM16 LE): quiet, with smooth edges
    so it neither clicks nor sounds like a ring-back or busy tone."""
    note = round(rate * _NOTE_MS / 1000)
    t = np.arange(note) / rate
    # A raised-cosine envelope over each note: no edges, nothing that clicks.
    envelope = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(note) / note)
    amplitude = FULL_SCALE * 10 ** (_LEVEL_DBFS / 20) * np.sqrt(2)
    period = np.zeros(round(rate * _PERIOD_MS / 1000))
    for index, freq in enumerate(_NOTES_HZ):
        start = index * note
        period[start : start + note] = amplitude * envelope * np.sin(2 * np.pi * freq * t)
    return to_bytes(np.round(period).astype(np.int16))


class ToolFiller:
    """Whether a filler is due; the bridge says when tools run and finish."""

    def __init__(self, kind: str, after_ms: float) -> None:
        self.kind = kind
        self.after_ms = after_ms
        self._since: float | None = None
        self._restart = False  # tools still run after a result: their wait starts anew
        self._spoken = False
        #: The thinking sound is in the playout.
        self.playing = False
        self.fillers = 0

    def tool_started(self, now: float) -> None:
        if self._since is None:
            self._since = now
            self._spoken = False
        self._restart = False

    def result(self, still_running: bool) -> bool:
        """A result is ready: True when the thinking sound must stop now. With other tools
        still running, the wait for them starts over (from the next ``due``)."""
        stop = self.playing
        self.playing = False
        self._since = None
        self._spoken = False
        self._restart = still_running
        return stop

    def interrupted(self) -> None:
        """The agent's own audio (or a cut) took the line: the sound is gone."""
        self.playing = False

    def due(self, now: float, quiet: bool) -> str | None:
        """The filler to start at ``now`` ("tone", "spoken"), if one is due."""
        if self._restart:
            self._since, self._restart = now, False
        if not self.kind or self._since is None or self.playing or not quiet:
            return None
        if now - self._since < self.after_ms:
            return None
        if self.kind == SPOKEN:
            if self._spoken:
                return None
            self._spoken = True
        else:
            self.playing = True
        self.fillers += 1
        return self.kind

    @property
    def next_deadline(self) -> float | None:
        if not self.kind or self._since is None or self.playing or self._spoken:
            return None
        return self._since + self.after_ms

    def reset(self) -> None:
        """A new session: its tool calls are new."""
        self._since = None
        self._restart = False
        self._spoken = False
        self.playing = False
