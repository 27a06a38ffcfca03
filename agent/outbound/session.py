"""OutboundSession: one call the agent placed, from its INVITE to its end.

The conversation, once the callee answers, is ``agent.call.CallSession``'s (the same bridge,
profile, tools, records); what differs is the start. The realtime session opens while the
call rings, so the agent is ready at the answer; the ring timeout CANCELs; and a call that
ends unanswered still leaves its outcome in the log and the call record. Early media (183)
is the network's ringback or announcement, never the callee: nothing before the answer
reaches the model, and the call's audio is only bound to the bridge once it is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from agent.bridge.outcome import AGENT, FAR_END
from agent.call import CallSession
from agent.observe.call_record import CallFacts, build_call_record
from agent.outbound import outcome as outcomes
from agent.sip.engine import CallListener
from agent.sip.message import uri_user

#: States an outbound call goes through (``GET /v1/calls/{id}``'s ``state``).
DIALING, RINGING, ANSWERED, ENDED = "dialing", "ringing", "answered", "ended"


@dataclass
class OutboundFacts:
    """What a placed call is, apart from the conversation."""

    target: str
    dial_uri: str
    account: str
    from_number: str
    ring_timeout_s: float
    #: The variables the request gave (names only go to the log).
    variables: dict[str, str] = field(default_factory=dict)


class EarlyEvents:
    """The listener of a call being placed until its session exists: keeps what the engine
    reports (a quick 486 may come with the dial's return), for ``replay`` in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("on_"):
            raise AttributeError(name)

        def keep(*args: Any) -> None:
            self.events.append((name, args))

        return keep

    def replay(self, listener: CallListener) -> None:
        for name, args in self.events:
            getattr(listener, name)(*args)
        self.events.clear()


class OutboundSession(CallSession):
    """A call the agent placed (``call`` already dialled; see the module docstring)."""

    placed = True

    def __init__(self, *args: Any, outbound: OutboundFacts, **kwargs: Any) -> None:
        self.outbound = outbound
        self.state = DIALING
        self.outcome: str | None = None
        #: (SIP code, ms after the INVITE) of each 180/183, as they came.
        self.progress: list[tuple[int, int]] = []
        self.ring_timed_out = False
        self._agent_failed = False
        self._deferred_media: tuple[str, int] | None = None
        self._media_bound = False
        self._ring_timer: asyncio.TimerHandle | None = None
        self.finished = asyncio.Event()
        super().__init__(*args, **kwargs)
        self.invite_at = time.time()
        # The request's variables fill the profile's placeholders ({name}); the call's own
        # ones (caller, dialed, call_id) win.
        self._configure(self.settings, outbound.variables)

    # -- the SIP call's events ----------------------------------------------------------------
    def on_progress(self, code: int, reason: str) -> None:
        self.progress.append((code, self._since_invite_ms()))
        if self.state == DIALING:
            self.state = RINGING
        self.log.info("outbound_call_progress", code=code, reason=reason)

    def on_media(self, codec: str, rate: int) -> None:
        if not self._media_bound:
            # Early media, or the answer's before the session is open: bound to the bridge
            # once both are there (what the bridge asks of the session then must reach it).
            self._deferred_media = (codec, rate)
            return
        super().on_media(codec, rate)

    def on_confirmed(self) -> None:
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None
        super().on_confirmed()

    def hang_up(self, reason: str) -> None:
        """End the call from outside (``POST /v1/calls/{id}/hangup``): CANCEL or BYE."""
        self._end(reason)

    # -- lifecycle ---------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._place()
        except Exception:
            self._agent_failed = True  # CallSession.run logs it; the outcome is "failed"
            raise

    async def _place(self) -> None:
        loop = asyncio.get_running_loop()
        self._ring_timer = loop.call_later(self.outbound.ring_timeout_s, self._ring_timeout)
        self.log.info(
            "outbound_call_placed",
            target=self.outbound.target,
            uri=self.outbound.dial_uri,
            account=self.outbound.account or None,
            profile=self.profile,
            ring_timeout_s=self.outbound.ring_timeout_s,
            variables=sorted(self.outbound.variables),
        )
        connecting = asyncio.ensure_future(self._connect())
        try:
            confirmed = await self._until_ended(self._confirmed.wait())
            if confirmed is None or not self._confirmed.is_set():
                return
            self._answered = True
            self.answered_at = time.time()
            self.state = ANSWERED
            self.observer.answered()
            self.log.info("call_answered", after_ms=self._since_invite_ms())
            connected = await self._until_ended(connecting)
            if not connected:
                if connected is False:
                    self._agent_failed = True
                    self.bridge.outcome.decide(AGENT, "the realtime session could not be opened")
                return
            self._media_bound = True
            if self._deferred_media is not None:
                codec, rate = self._deferred_media
                self._deferred_media = None
                super().on_media(codec, rate)
            if self.call.codec is None:
                self.log.warning("call_without_media")
                self._agent_failed = True
                self._end("no audio was negotiated")
                return
            # The callee's audio before the answer (early media) is not the callee's.
            self.call.take_frames()
            await self._converse()
        finally:
            if self._ring_timer is not None:
                self._ring_timer.cancel()
                self._ring_timer = None
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connecting

    def _ring_timeout(self) -> None:
        self._ring_timer = None
        if self._confirmed.is_set() or self.call.disconnected:
            return
        self.ring_timed_out = True
        self.log.info("outbound_ring_timeout", ring_timeout_s=self.outbound.ring_timeout_s)
        within = f"within {self.outbound.ring_timeout_s:g} s"
        self.bridge.outcome.decide(
            AGENT,
            f"no answer {within} (CANCEL sent)"
            if self.call.far_end_responded
            else f"no SIP response {within}",
        )
        self.call.hang_up()

    async def _finish(self) -> None:
        self.outcome = outcomes.classify(
            answered=self._answered,
            code=self._hangup_code or 0,
            ring_timed_out=self.ring_timed_out,
            far_end_responded=self.call.far_end_responded,
            agent_failed=self._agent_failed,
        )
        if not self._answered and not self.ring_timed_out:
            code = self._hangup_code or 0
            self.bridge.outcome.decide(
                FAR_END,
                f"{self.outcome}: {code} {self._hangup_reason}".strip()
                if self.call.far_end_responded
                else f"no SIP response from the far end ({self._hangup_reason or code})",
            )
        self.state = ENDED
        try:
            await super()._finish()
        finally:
            self.log.info(
                "outbound_call_outcome",
                outcome=self.outcome,
                sip_code=self._hangup_code,
                reason=self.bridge.outcome.reason,
                **self.timings(),
            )
            self.finished.set()

    # -- what it reports ---------------------------------------------------------------------
    @property
    def sip_code(self) -> int | None:
        """The SIP status the call ended with (None while it lasts)."""
        return self._hangup_code if self.state == ENDED else None

    def _since_invite_ms(self) -> int:
        return round((time.time() - self.invite_at) * 1000)

    def timings(self) -> dict[str, int | None]:
        """Milliseconds after the INVITE: the first 180/183, the answer, the end."""
        end = self.ended_at
        return {
            "progress_ms": self.progress[0][1] if self.progress else None,
            "answer_ms": round((self.answered_at - self.invite_at) * 1000)
            if self.answered_at
            else None,
            "end_ms": round((end - self.invite_at) * 1000) if end else None,
        }

    def summary(self) -> dict[str, Any]:
        """The call as the API reports it: state, outcome, timings, transcript so far."""
        return {
            "call_id": self.call_id,
            "state": self.state,
            "outcome": self.outcome,
            "to": self.outbound.target,
            "account": self.outbound.account or None,
            "profile": self.profile,
            "sip_call_id": self.call.sip_call_id,
            "sip_code": self.sip_code,
            "reason": self.bridge.outcome.reason or None,
            "progress": [{"code": code, "at_ms": at} for code, at in self.progress],
            "timings": self.timings(),
            # Answering-machine detection's verdict once it came (None before, or when off).
            "amd": self.bridge.amd_record,
            "transcript": [
                {"role": line["role"], "text": line.get("text", "")}
                for line in self.records.lines
                if line.get("role") in ("caller", "agent") and line.get("text")
            ],
        }

    def call_facts(self, usage: dict[str, Any] | None) -> CallFacts:
        facts = super().call_facts(usage)
        # The agent called: the "caller" is this end, the "dialed" the target.
        facts.caller, facts.caller_uri = uri_user(self.call.local_uri), self.call.local_uri
        facts.dialed, facts.dialed_uri = self.outbound.target, self.outbound.dial_uri
        facts.direction = "outbound"
        facts.outbound = {
            "target": self.outbound.target,
            "uri": self.outbound.dial_uri,
            "account": self.outbound.account or None,
            "from": self.outbound.from_number or None,
            "outcome": self.outcome,
            "ring_timeout_s": self.outbound.ring_timeout_s,
            "ring_timed_out": self.ring_timed_out,
            "progress": [{"code": code, "at_ms": at} for code, at in self.progress],
            **self.timings(),
        }
        return facts

    async def _write_call_record(self, usage: dict[str, Any] | None) -> None:
        """Every placed call leaves a record, answered or not (its outcome is the point)."""
        if self._stem is None:
            return
        self.record = build_call_record(self.call_facts(usage), self.records.lines)
        path = self._stem.with_suffix(".json")
        if await self._record_store.save(path, self.record):
            self.record_path = path
