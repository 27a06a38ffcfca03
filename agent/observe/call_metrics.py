"""What one call tells the metrics, and when: the observer the app hands each CallSession.

The session calls it at a handful of points (the realtime session opened, the answer, each
parsed server event, each tool call, the end), never per media frame. Per-event work is two
``isinstance`` checks; everything else waits for the end of the call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from agent.bridge.events import (
    AudioDelta,
    PlayoutStarted,
    ResponseCreated,
    ServerEvent,
    SpeechStarted,
    SpeechStopped,
)
from agent.observe.metrics import ENDED_BY, AgentMetrics, call_outcome


@dataclass(frozen=True)
class CallSummary:
    """A call's figures at its end."""

    answered: bool
    ended_by: str
    #: Caller turns that cut agent audio short.
    interruptions: int
    #: Frames of agent audio that were due and came late (``Playout.gap_frames``).
    gap_frames: int


class CallObserver(Protocol):
    def session_opened(self, seconds: float) -> None:
        """A realtime session took the configuration ``seconds`` after it was opened."""
        ...

    def answered(self) -> None: ...

    def server_event(self, event: ServerEvent, now_ms: float) -> None:
        """Each parsed server event, with the session's clock in ms."""
        ...

    def tool_call(self, outcome: str) -> None: ...

    def finished(self, summary: CallSummary) -> None: ...


class NoCallObserver:
    """For a session nobody observes (tests that build one without an app)."""

    def session_opened(self, seconds: float) -> None:
        pass

    def answered(self) -> None:
        pass

    def server_event(self, event: ServerEvent, now_ms: float) -> None:
        pass

    def tool_call(self, outcome: str) -> None:
        pass

    def finished(self, summary: CallSummary) -> None:
        pass


class TurnClock:
    """Time to the first reply audio of each caller turn, from the server's own events.

    A turn ends with ``speech_stopped``; its reply is the next response created after it,
    and its first audio delta closes the measurement (over WebRTC, whose audio rides the
    media track, the server's ``output_audio_buffer.started`` for it). Late deltas of a
    response the caller talked over (created before the turn ended) are not taken for the
    reply, and a turn the caller resumes (``speech_started`` again before any reply) starts
    over.
    """

    def __init__(self) -> None:
        self._turn_end: float | None = None
        self._reply: str | None = None

    def event(self, event: ServerEvent, now_ms: float) -> float | None:
        """Seconds from the turn's end to its reply's first audio, once, on that delta."""
        if isinstance(event, (AudioDelta, PlayoutStarted)):
            if self._reply is not None and event.response_id == self._reply:
                assert self._turn_end is not None
                waited = (now_ms - self._turn_end) / 1000
                self._turn_end = self._reply = None
                return waited
        elif isinstance(event, SpeechStopped):
            self._turn_end, self._reply = now_ms, None
        elif isinstance(event, SpeechStarted):
            self._turn_end = self._reply = None
        elif isinstance(event, ResponseCreated) and self._turn_end is not None:
            self._reply = self._reply or event.response_id
        return None


class CallMetrics:
    """One call's observer, feeding the process's :class:`AgentMetrics`."""

    def __init__(self, metrics: AgentMetrics, *, placed: bool = False) -> None:
        """``placed``: a call the agent placed, whose outcome is counted by the dialer
        (``voice_agent_outbound_calls_total``), not with the calls it takes."""
        self._metrics = metrics
        self._placed = placed
        self._turns = TurnClock()
        self._answered_at: float | None = None

    def session_opened(self, seconds: float) -> None:
        self._metrics.realtime_connect.observe(seconds)

    def answered(self) -> None:
        self._answered_at = time.monotonic()

    def server_event(self, event: ServerEvent, now_ms: float) -> None:
        waited = self._turns.event(event, now_ms)
        if waited is not None:
            self._metrics.first_audio.observe(waited)

    def tool_call(self, outcome: str) -> None:
        self._metrics.tool_calls.labels(outcome).inc()

    def finished(self, summary: CallSummary) -> None:
        metrics = self._metrics
        ended_by = ENDED_BY.get(summary.ended_by, "agent")
        if not self._placed:
            metrics.calls.labels(call_outcome(summary.answered, summary.ended_by), ended_by).inc()
        if summary.answered and self._answered_at is not None:
            metrics.call_duration.observe(time.monotonic() - self._answered_at)
        if summary.interruptions:
            metrics.barge_ins.inc(summary.interruptions)
        if summary.gap_frames:
            metrics.lost_frames.labels("to_caller").inc(summary.gap_frames)
