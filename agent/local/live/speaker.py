"""What the agent says in a GPT-Live session: one utterance at a time, asked of the responder,
its audio paced out as ``session.output_audio.delta`` and its words as
``session.output_transcript.delta``, cut short the moment the caller barges in.

Utterances queue up (a reply to the caller, a commentary to read out) and start in turn,
never while the caller holds the floor: the agent does not start talking over the caller.

Pacing runs on one output timeline, the protocol's clock as a client playing the audio at
arrival hears it. A chunk goes out once it would finish playing no more than ``lead_ms``
from now, so the server runs ahead of real time by at most ``lead_ms`` (a large lead
emulates a server that bursts its audio ahead), and utterances follow each other on the
timeline without overlapping. Transcript positions (``start_ms``, ``end_ms``) are on that
timeline, in ms from the session's start.

Words are released with the audio at a speaking rate (a word per ``WORD_MS`` of audio), each
delta spanning the audio since the previous one; the last word (and any the rate did not
reach) goes with the end of the audio, so an utterance's deltas span all of its audio. An
interrupted utterance's transcript stops about where its audio did: the words the caller
never heard are never sent. Live has no output-done event; an utterance just ends.

An utterance whose plan calls a function is the acknowledgement of a delegation: the
protocol hears of the call as soon as the plan is known (``on_tool_call``, which creates the
delegation and says how long the acknowledgement must wait, Live's
``acknowledgement_delay_ms``), and the acknowledgement's audio starts no earlier than that.
Until its first chunk went out it is pending, and ``cancel_acknowledgement`` drops it (the
client's commentary or thinking made it unnecessary).
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from agent.audio.codecs import Codec
from agent.local.events import ProtocolError
from agent.local.live.events import LiveOutbox, error_event, timeline_ms
from agent.local.replies import ReplyPlan, ReplyRequest
from agent.local.reply_source import Pending, ReplySource
from agent.local.reply_stream import ReplyStream
from agent.local.responder import Responder

WORD_MS = 250
"""The speaking rate the transcript follows the audio at: about four words a second."""

log = structlog.get_logger(__name__)


@dataclass
class _Utterance:
    """An utterance in flight: planning (``plan`` is None), then streaming."""

    source: ReplySource
    plan: ReplyPlan | None = None
    words: list[str] = field(default_factory=list)
    next_word: int = 0
    audio_ms: float = 0.0
    """Audio sent so far."""
    transcript_from: float | None = None
    """Where the next transcript delta starts on the output timeline (s on the clock)."""
    starved: bool = False
    """The producer had no audio ready at the last look; its stream wakes us."""
    hold_until: float | None = None
    """A delegation's acknowledgement: no audio before this (clock seconds)."""


class Speaker:
    """The agent's voice in one session."""

    def __init__(
        self,
        responder: Responder,
        codec: Codec,
        out: LiveOutbox,
        *,
        origin: float,
        chunk_ms: int,
        lead_ms: int,
        wake: Callable[[], None],
        on_tool_call: Callable[[ReplyPlan, float], float],
    ) -> None:
        """``origin`` is the session's start on the clock; ``on_tool_call`` hears of each
        plan that calls a function, with the clock time it was planned by, and returns how
        long (s) its words, the acknowledgement, must wait."""
        self._responder = responder
        self._codec = codec
        self._out = out
        self._origin = origin
        self._chunk_ms = chunk_ms
        self._chunk_s = chunk_ms / 1000
        # A chunk must be able to go out before it starts playing.
        self._lead_s = max(lead_ms, chunk_ms) / 1000
        self._wake = wake
        self._on_tool_call = on_tool_call
        self._queue: deque[ReplyRequest] = deque()
        self._current: _Utterance | None = None
        self._cursor = origin
        """When the audio sent so far will have played (clock seconds)."""
        self._sent_text = False

    @property
    def speaking(self) -> bool:
        """True while an utterance is being planned or streamed."""
        return self._current is not None

    @property
    def played_until(self) -> float:
        """When the audio sent so far will have played out, on the clock."""
        return self._cursor

    def say(self, request: ReplyRequest) -> None:
        """Queue an utterance; it starts once those before it ended and the floor is free."""
        self._queue.append(request)

    def interrupt(self) -> bool:
        """The caller barged in: stop the utterance now and forget the queued ones. True if
        anything was stopped."""
        stopped = self._current is not None or bool(self._queue)
        if self._current is not None:
            self._current.source.cancel()
            self._current = None
        self._queue.clear()
        return stopped

    def cancel_acknowledgement(self) -> bool:
        """Drop the current utterance if it is a delegation's acknowledgement none of whose
        audio went out yet. True if one was dropped."""
        current = self._current
        if current is None or current.hold_until is None or current.audio_ms > 0:
            return False
        current.source.cancel()
        self._current = None
        return True

    def poll(self, now: float, floor_free: bool) -> None:
        """Start the next utterance if the floor is free, and send what is due by ``now``."""
        while self._step(now, floor_free):
            pass

    @property
    def next_due(self) -> float | None:
        """When the next chunk is due; None while waiting on a producer, or with nothing to
        say (a new utterance or a free floor comes with a client event, which polls)."""
        current = self._current
        if current is None or current.plan is None or current.starved:
            return None
        due = self._cursor + self._chunk_s - self._lead_s
        return due if current.hold_until is None else max(due, current.hold_until)

    def close(self) -> None:
        """The session ended: stop the producer."""
        self.interrupt()

    # ---- one step at a time ----------------------------------------------------------------

    def _step(self, now: float, floor_free: bool) -> bool:
        """Make one move; True if another may follow at once."""
        current = self._current
        if current is None:
            if not self._queue or not floor_free:
                return False
            self._start(self._queue.popleft())
            return True
        if current.plan is None:
            try:
                plan = current.source.plan()
            except Exception as exc:
                self._fail(exc)
                return True
            if plan is None:
                return False
            current.plan = plan
            current.words = re.findall(r"\s*\S+", plan.text)
            if plan.tool_call is not None:
                current.hold_until = now + self._on_tool_call(plan, now)
        if current.hold_until is not None and now < current.hold_until:
            return False
        if max(self._cursor, now) + self._chunk_s - self._lead_s > now:
            return False
        try:
            chunk = current.source.next_chunk()
        except Exception as exc:
            self._fail(exc)
            return True
        if chunk is Pending.WAIT:
            current.starved = True
            return False
        current.starved = False
        if chunk is Pending.END:
            self._finish(current, now)
            return True
        self._send(current, chunk, now)
        return True

    def _start(self, request: ReplyRequest) -> None:
        try:
            reply = self._responder.reply(request)
        except Exception as exc:
            self._fail(exc)
            return
        self._current = _Utterance(ReplySource(reply, self._codec, self._chunk_ms, audio=True))
        if isinstance(reply, ReplyStream):
            reply.set_waker(self._wake)

    def _send(self, current: _Utterance, chunk: bytes, now: float) -> None:
        starts = max(self._cursor, now)
        if current.transcript_from is None:
            current.transcript_from = starts
        self._out.audio(chunk)
        samples = len(chunk) // self._codec.sample_bytes
        duration_ms = samples * 1000 / self._codec.rate
        self._cursor = starts + duration_ms / 1000
        # The words this much audio has had time to say (the first comes with the first
        # chunk); the last waits for the end of the audio, so the deltas span all of it.
        spoken = math.floor(current.audio_ms / WORD_MS) + 1
        current.audio_ms += duration_ms
        self._send_words(current, min(spoken, len(current.words) - 1), self._cursor)

    def _finish(self, current: _Utterance, now: float) -> None:
        """The utterance's audio was all sent: the rest of its words go with its end."""
        self._current = None
        if current.transcript_from is None:
            current.transcript_from = max(self._cursor, now)
        ends = max(self._cursor, current.transcript_from)
        self._send_words(current, len(current.words), ends)

    def _send_words(self, current: _Utterance, upto: int, until: float) -> None:
        if upto <= current.next_word or current.transcript_from is None:
            return
        delta = "".join(current.words[current.next_word : upto])
        if self._sent_text and not delta[:1].isspace():
            # Deltas accumulate into one session transcript: keep utterances apart.
            delta = " " + delta
        self._out.send(
            "session.output_transcript.delta",
            delta=delta,
            start_ms=timeline_ms(current.transcript_from - self._origin),
            end_ms=timeline_ms(until - self._origin),
        )
        current.next_word = upto
        current.transcript_from = until
        self._sent_text = True

    def _fail(self, exc: BaseException) -> None:
        """The responder failed: the client hears of it, the session goes on."""
        log.error("local live responder failed", error=str(exc), error_type=type(exc).__name__)
        if self._current is not None:
            self._current.source.cancel()
            self._current = None
        err = ProtocolError(
            f"The responder failed: {exc}", code="responder_failed", kind="server_error"
        )
        self._out.put(error_event(err))
