"""The opening of an outbound call with answering-machine detection: who answered, and what
the agent does first.

With ``BridgeConfig.amd`` set, the agent does not speak on the answer. The callee's first
seconds go to an ``AnsweringMachineDetector`` (``agent.outbound.amd``), and its events become
the moves the bridge makes: ``Converse`` (a person answered, or nobody can tell: the agent
opens the conversation with its greeting), ``AwaitGreetingEnd`` (a machine, and a message is
to be left: still silent), ``LeaveMessage`` (the machine's greeting is over: the model speaks
the voicemail instructions, then the agent hangs up) or ``EndCall`` (a machine, and the
profile hangs up on machines).

Callee audio is held back from the model until a person (or unknown) verdict, and for good
after a machine one. Forwarding it would not work: a Realtime session's VAD answers speech by
itself (``create_response``) and GPT-Live's server always does, so the model would reply to
the greeting, whose words would also enter the conversation; on a machine, the greeting, the
beep or line noise would cut the message short as a barge-in. The model misses nothing it
needs, since the agent opens the conversation itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.outbound.amd import (
    FRAME_MS,
    HUMAN,
    LINE_GAP_MS,
    MACHINE,
    UNKNOWN,
    AmdEvent,
    AnsweringMachineDetector,
    GreetingEnded,
    Verdict,
)
from agent.outbound.amd_settings import AmdSettings

#: ``on_machine``: leave a message after the greeting, or hang up at once.
MESSAGE = "message"
HANGUP = "hangup"


@dataclass(frozen=True, slots=True)
class Converse:
    """A person answered (or nobody can tell): the agent opens the conversation."""

    verdict: Verdict


@dataclass(frozen=True, slots=True)
class AwaitGreetingEnd:
    """A machine answered: the agent stays silent until its greeting ends."""

    verdict: Verdict


@dataclass(frozen=True, slots=True)
class LeaveMessage:
    """The machine records: the model speaks ``instructions``; hang up once heard, or after
    ``max_ms`` at the latest."""

    end: GreetingEnded
    instructions: str
    max_ms: int


@dataclass(frozen=True, slots=True)
class EndCall:
    """A machine answered and the profile hangs up on machines."""

    verdict: Verdict


Move = Converse | AwaitGreetingEnd | LeaveMessage | EndCall


class AmdOpening:
    """One outbound call's detection, from the answer (``answered_at``, on the bridge's clock
    in ms) until its last move."""

    def __init__(
        self, settings: AmdSettings, voicemail: str, rate: int, answered_at: float
    ) -> None:
        self.settings = settings
        self.voicemail = voicemail
        self.detector = AnsweringMachineDetector(settings, rate)
        self._origin = answered_at
        #: Callee audio is kept from the model (see the module's docstring).
        self.holding = True
        #: The agent must stay silent: no verdict yet, or a machine's greeting still runs.
        self.deciding = True

    @property
    def listening(self) -> bool:
        """The detector still wants the callee's audio."""
        return self.deciding and not self.detector.done

    @property
    def next_deadline(self) -> float | None:
        """When the bridge must tick so that a line sending nothing still gets a verdict."""
        if not self.listening:
            return None
        return self._origin + self.detector.position_ms + LINE_GAP_MS + FRAME_MS

    def frame(self, pcm: bytes) -> list[Move]:
        return self._moves(self.detector.frame(pcm))

    def tick(self, now: float) -> list[Move]:
        return self._moves(self.detector.tick(now - self._origin))

    def _moves(self, events: list[AmdEvent]) -> list[Move]:
        moves: list[Move] = []
        for event in events:
            if isinstance(event, GreetingEnded):
                self.deciding = False
                moves.append(LeaveMessage(event, self.voicemail, self.settings.message_max_ms))
            elif event.verdict in (HUMAN, UNKNOWN):
                self.holding = self.deciding = False
                moves.append(Converse(event))
            elif event.verdict == MACHINE and self.settings.on_machine == HANGUP:
                self.deciding = False
                moves.append(EndCall(event))
            else:
                moves.append(AwaitGreetingEnd(event))
        return moves

    @property
    def record(self) -> dict[str, Any] | None:
        """The call record's ``amd``: the verdict, its timing, and what followed."""
        record = self.detector.record
        if record is None:
            return None
        return {**record, "on_machine": self.settings.on_machine}
