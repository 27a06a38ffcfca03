"""Per-turn latency: from the end of the caller's speech to the first agent audio on the line.

The end of speech is placed on the bridge's clock from the server's VAD: ``speech_stopped``
says where in the session's audio the caller stopped (``audio_end_ms``), and the audio the
bridge appended after that point is how long ago it was. (GPT-Live reports no speech
boundaries: its latest caller transcript stands in, which comes a little after the speech.)
The first audio heard is the first pull of the reply's item by the media port, taken from
the playout buffer's per-item pull index: ``frames_pulled`` minus that index is how many 20 ms
ticks ago it went to the line. No I/O; fed by the bridge.
"""

from __future__ import annotations

from agent.audio.pcm import FRAME_MS
from agent.audio.playout import Playout


class TurnTimer:
    """One call's turn latencies, in ms, in the order the turns were answered."""

    def __init__(self) -> None:
        self.latencies_ms: list[int] = []
        self._speech_end: float | None = None
        self._reply_item: str | None = None

    def caller_started(self) -> None:
        """The caller talks (again): the turn is not over yet."""
        self._speech_end = None
        self._reply_item = None

    def caller_stopped(self, end: float) -> None:
        """The caller's speech ended at ``end`` (bridge clock, ms)."""
        self._speech_end = end
        self._reply_item = None

    def caller_heard(self, now: float) -> None:
        """A caller transcript arrived (GPT-Live): until the reply starts, the latest one
        marks the end of speech."""
        if self._reply_item is None:
            self._speech_end = now

    def agent_audio(self, item_id: str) -> None:
        """Audio of ``item_id`` is queued: the first item after the caller's turn answers it."""
        if self._speech_end is not None and self._reply_item is None:
            self._reply_item = item_id

    def check(self, playout: Playout, now: float) -> None:
        """Once the reply's first frame went to the line, count the turn."""
        item, end = self._reply_item, self._speech_end
        if item is None or end is None:
            return
        first = playout.first_pull(item)
        if first is None:
            return
        ticks_ago = max(playout.frames_pulled - 1 - first, 0)
        heard_at = now - ticks_ago * FRAME_MS
        self.latencies_ms.append(max(round(heard_at - end), 0))
        self._speech_end = self._reply_item = None
