"""A call's silence and length limits, without I/O: what is due, and when.

Silence (``silence_ms``) is wall-clock time with nothing going on: the caller not speaking,
the agent not speaking, no tool running, the call not on hold. The bridge says when
something is going on (``busy``) and when the caller showed signs of life
(``caller_active``). The first silent period ends in one question ("are you still there?"),
the second in a goodbye and the hang-up; any sign of the caller in between starts over. The
agent's own question does not: it only postpones the count while it is being said.

Length (``max_call_ms``) counts from the answer whatever happens: a goodbye ``goodbye_lead_ms``
before the limit (at most half the call), the hang-up at the limit at the latest.
"""

from __future__ import annotations

from dataclasses import dataclass

STILL_THERE = (
    "The caller has said nothing for a while. Ask them, in one short sentence, whether they "
    "are still there."
)
SILENCE_GOODBYE = (
    "The caller is still silent. Say goodbye in one short, friendly sentence: the call ends "
    "after it."
)
TIME_GOODBYE = (
    "This call is about to reach its time limit. Tell the caller politely, in one or two short "
    "sentences, that the call has to end now, and say goodbye."
)


@dataclass(frozen=True, slots=True)
class Ask:
    """Ask the model to say something (``instructions`` for one response)."""

    instructions: str


@dataclass(frozen=True, slots=True)
class Finish:
    """End the call after a goodbye: ``goodbye`` for the model to say, then hang up for
    ``reason`` once it has been heard, or at ``deadline`` (bridge clock, ms) at the latest."""

    goodbye: str
    reason: str
    deadline: float


Due = Ask | Finish


class CallLimits:
    """One call's silence and length limits (0 turns either off)."""

    def __init__(self, silence_ms: float, max_call_ms: float, goodbye_lead_ms: float) -> None:
        self.silence_ms = silence_ms
        self.max_call_ms = max_call_ms
        self.goodbye_lead_ms = min(goodbye_lead_ms, max_call_ms / 2)
        self._quiet_since: float | None = None
        self._asked = False
        self._silence_done = False
        self._answered_at: float | None = None
        self._goodbye_said = False

    def start(self, now: float) -> None:
        """The call was answered (and acknowledged): both clocks start."""
        self._answered_at = now
        self._quiet_since = now

    def caller_active(self, now: float) -> None:
        """The caller spoke, or pressed a key: the silence count starts over, question and all."""
        self._quiet_since = now
        self._asked = False

    def busy(self, now: float) -> None:
        """Something is going on (anyone speaking, a tool running, the call held)."""
        if self._quiet_since is not None:
            self._quiet_since = now

    def paused(self) -> None:
        """Time passes unseen for a while (the call is held): count from the next ``due``."""
        if self._answered_at is not None:
            self._quiet_since = None

    def due(self, now: float) -> list[Due]:
        """What the limits ask for at ``now`` (each at most once)."""
        if self._answered_at is None:
            return []
        if self._quiet_since is None:
            self._quiet_since = now
        found: list[Due] = []
        if self.max_call_ms > 0 and not self._goodbye_said:
            limit = self._answered_at + self.max_call_ms
            if now >= limit - self.goodbye_lead_ms:
                self._goodbye_said = True
                seconds = f"{self.max_call_ms / 1000:g}"
                found.append(Finish(TIME_GOODBYE, f"max_call_s: the {seconds} s limit", limit))
        silence_on = self.silence_ms > 0 and not self._silence_done and not self._goodbye_said
        if silence_on and now - self._quiet_since >= self.silence_ms:
            self._quiet_since = now
            if not self._asked:
                self._asked = True
                found.append(Ask(STILL_THERE))
            else:
                self._silence_done = True
                seconds = f"{2 * self.silence_ms / 1000:g}"
                reason = f"silence: no caller speech for {seconds} s"
                found.append(Finish(SILENCE_GOODBYE, reason, now + self.silence_ms))
        return found

    @property
    def next_deadline(self) -> float | None:
        """When ``due`` may next have something (None: nothing pending)."""
        if self._answered_at is None:
            return None
        deadlines: list[float] = []
        if self.max_call_ms > 0 and not self._goodbye_said:
            deadlines.append(self._answered_at + self.max_call_ms - self.goodbye_lead_ms)
        if (
            self.silence_ms > 0
            and not self._silence_done
            and not self._goodbye_said
            and self._quiet_since is not None
        ):
            deadlines.append(self._quiet_since + self.silence_ms)
        return min(deadlines) if deadlines else None
