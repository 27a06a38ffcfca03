"""The caller's words while they speak: the open turn is transcribed every ``interval_ms`` of its
audio and the new words go out as ``session.input_transcript.delta``; when the turn ends, its
whole audio is transcribed once more and the rest goes out.

Speech-to-text is slow, so it runs on the transcriber's threads: a finished job wakes the
protocol, which reports it at its next poll. One partial job runs at a time, so a slow model
is never queued up behind itself; the final job of a turn is the one its reply waits for.

Transcript deltas only append, but a partial hypothesis may change its mind. So a partial
sends only words beyond those already sent and holds back its last word (likely cut off
mid-word); the final sends every word beyond the count already sent. Deltas of one turn tile
its span on the input timeline; turns are reported in order, so the text reads in order.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import structlog

from agent.local.live.caller_input import Turn
from agent.local.live.events import LiveOutbox
from agent.local.responder import Transcriber

log = structlog.get_logger(__name__)


@dataclass
class _Transcript:
    """One turn's transcript: what was sent of it and the jobs under way."""

    start_ms: float
    next_partial_ms: float
    """The turn's audio length (ms) at which the next partial job is due."""
    sent_words: int = 0
    sent_until_ms: float = 0.0
    partial: tuple[Future[str], float] | None = None
    """A partial job and where the audio it hears ends (ms on the input timeline)."""
    final: Future[str] | None = None
    end_ms: float = 0.0


class CallerTranscript:
    """The transcripts of one session's turns, reported as their jobs finish."""

    def __init__(
        self,
        transcriber: Transcriber | None,
        out: LiveOutbox,
        wake: Callable[[], None],
        interval_ms: int,
    ) -> None:
        self._transcriber = transcriber
        self._out = out
        self._wake = wake
        self._interval_ms = max(interval_ms, 1)
        self._turns: list[_Transcript] = []
        """Turns not fully reported, oldest first; the last may be open (no final job)."""
        self._sent_any = False

    def speech_started(self, start_ms: float) -> None:
        if self._transcriber is not None:
            self._turns.append(_Transcript(start_ms, self._interval_ms, sent_until_ms=start_ms))

    def progress(self, heard_ms: float, audio: Callable[[], bytes], rate: int) -> None:
        """The open turn has ``heard_ms`` of audio: if a partial is due, transcribe
        ``audio()`` (PCM16 at ``rate``; asked for only then, as it is a copy)."""
        turn = self._open()
        if turn is None or turn.partial is not None or heard_ms < turn.next_partial_ms:
            return
        turn.next_partial_ms = heard_ms + self._interval_ms
        turn.partial = (self._submit(audio(), rate), turn.start_ms + heard_ms)

    def turn_ended(self, ended: Turn) -> Future[str] | None:
        """Transcribe the whole turn; the future of its text (None with no transcriber)."""
        turn = self._open()
        if turn is None or self._transcriber is None:
            return None
        if turn.partial is not None:
            # The final hears everything the partial would have: drop the partial.
            turn.partial[0].cancel()
            turn.partial = None
        turn.end_ms = ended.end_ms
        turn.final = self._submit(ended.audio, ended.rate)
        return turn.final

    def report(self) -> None:
        """Send the words of the jobs that finished, turn by turn, in order."""
        while self._turns:
            turn = self._turns[0]
            if turn.final is None:
                self._report_partial(turn)
                return
            if not turn.final.done():
                return
            self._turns.pop(0)
            text = _result(turn.final, "final")
            if text is not None:
                self._send(turn, text.split(), turn.end_ms)

    def cancel(self) -> None:
        """The session ended: stop the jobs not reported yet."""
        for turn in self._turns:
            for job in (turn.final, turn.partial[0] if turn.partial else None):
                if job is not None:
                    job.cancel()
        self._turns.clear()

    def _open(self) -> _Transcript | None:
        if self._turns and self._turns[-1].final is None:
            return self._turns[-1]
        return None

    def _report_partial(self, turn: _Transcript) -> None:
        if turn.partial is None or not turn.partial[0].done():
            return
        job, heard_until_ms = turn.partial
        turn.partial = None
        text = _result(job, "partial")
        if text is not None:
            words = text.split()
            self._send(turn, words[:-1], heard_until_ms)

    def _send(self, turn: _Transcript, words: list[str], until_ms: float) -> None:
        new = words[turn.sent_words :]
        if not new:
            return
        delta = " ".join(new)
        if self._sent_any:
            delta = " " + delta
        start_ms = turn.sent_until_ms
        end_ms = max(until_ms, start_ms)
        self._out.send(
            "session.input_transcript.delta",
            delta=delta,
            start_ms=round(start_ms),
            end_ms=round(end_ms),
        )
        turn.sent_words += len(new)
        turn.sent_until_ms = end_ms
        self._sent_any = True

    def _submit(self, audio: bytes, rate: int) -> Future[str]:
        assert self._transcriber is not None
        job = self._transcriber.submit(audio, rate)
        job.add_done_callback(lambda _: self._wake())
        return job


def _result(job: Future[str], which: str) -> str | None:
    """A finished job's text, or None if it was cancelled or failed (logged: the caller's
    transcript is a courtesy, the conversation goes on without it)."""
    if job.cancelled():
        return None
    error = job.exception()
    if error is not None:
        log.warning("local live transcription failed", job=which, error=str(error))
        return None
    return job.result()
