"""The outbound dialer: a call request checked, counted and placed, and the calls it placed.

``OutboundCalls.place`` does, in order: read the request (``RequestError`` names the field
that is wrong), ask the toll-fraud policy and the caps (``Refused`` names the rule; nothing
was sent), count the call in the ledger, send the INVITE (``DialFailed`` when the stack
could not), and start the call's ``OutboundSession``. ``voice-agent call`` and the HTTP API
both go through it, so both are held to the same rules.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from agent.config import Settings
from agent.outbound.ledger import DEFAULT_NAME, CapReached, Ledger, LedgerError
from agent.outbound.outcome import FAILED, REFUSED
from agent.outbound.policy import (
    AT_CAPACITY,
    DAILY_CAP,
    Refusal,
    TollPolicy,
    destination_key,
)
from agent.outbound.session import EarlyEvents, OutboundFacts, OutboundSession
from agent.outbound.target import TargetError, dial_uri, parse_target
from agent.sip.engine import DialError, SipEngine

log = structlog.get_logger("outbound")

#: Finished calls ``GET /v1/calls`` still lists (oldest forgotten first).
KEPT_FINISHED = 200
LEDGER_UNAVAILABLE = "ledger_unavailable"
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_FROM = re.compile(r"\+?[0-9A-Za-z_.-]{1,64}")
MAX_VARIABLES = 32
MAX_VARIABLE_CHARS = 2000


@dataclass
class CallRequest:
    """One call to place, as ``voice-agent call`` or ``POST /v1/calls`` gives it."""

    to: str
    profile: str = ""
    account: str = ""
    from_number: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    #: None: ``outbound.ring_timeout_s``.
    ring_timeout_s: float | None = None


class RequestError(ValueError):
    """A field of the request is wrong: ``field`` and ``str()`` say which and why."""

    def __init__(self, field_name: str, why: str) -> None:
        super().__init__(why)
        self.field = field_name


class Refused(Exception):
    """The policy refused the call before any INVITE; ``refusal`` names the rule."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"{refusal.rule}: {refusal.detail}")
        self.refusal = refusal


class DialFailed(Exception):
    """The stack sent no INVITE (``str()`` says why); the call counts as failed."""


class NotAccepting(Exception):
    """The agent is shutting down: no new call is placed."""


#: Builds the session of a placed call: (call, listener's events, facts, profile) -> session.
SessionFactory = Callable[..., OutboundSession]


def read_request(settings: Settings, request: CallRequest) -> tuple[str, OutboundFacts]:
    """The request checked field by field: (profile, facts); raises ``RequestError``. Needs
    no SIP: ``voice-agent call`` checks its arguments before it starts anything."""
    out = settings.outbound
    accounts = {account.name: account for account in settings.sip.accounts}
    try:
        target = parse_target(request.to)
    except TargetError as exc:
        raise RequestError("to", str(exc)) from None
    if request.account and request.account not in accounts:
        raise RequestError("account", f"{request.account!r} is not a [[sip.accounts]] name")
    profile = request.profile or out.profile
    if profile and profile not in settings.profiles:
        raise RequestError("profile", f"{profile!r} is not a [profiles] name")
    from_number = request.from_number or out.from_number
    if from_number and not _FROM.fullmatch(from_number):
        raise RequestError("from", f"{from_number[:80]!r} is not a number or user name")
    ring = out.ring_timeout_s if request.ring_timeout_s is None else request.ring_timeout_s
    if not 1 <= ring <= 300:
        raise RequestError("ring_timeout_s", "must be between 1 and 300 seconds")
    if len(request.variables) > MAX_VARIABLES:
        raise RequestError("variables", f"at most {MAX_VARIABLES} variables")
    for name, value in request.variables.items():
        if not _VARIABLE_NAME.fullmatch(name):
            raise RequestError("variables", f"{name[:80]!r} is not a variable name")
        if len(value) > MAX_VARIABLE_CHARS:
            raise RequestError("variables", f"{name}: longer than {MAX_VARIABLE_CHARS} chars")
    registrar = accounts[request.account].registrar if request.account else None
    try:
        uri = dial_uri(target, registrar)
    except TargetError as exc:
        raise RequestError("account", str(exc)) from None
    facts = OutboundFacts(
        target=target.text,
        dial_uri=uri,
        account=request.account,
        from_number=from_number,
        ring_timeout_s=ring,
        variables=dict(request.variables),
    )
    return profile, facts


def ledger_path(settings: Settings) -> Path | None:
    out = settings.outbound
    if out.ledger_file:
        return Path(out.ledger_file)
    if settings.records.dir:
        return Path(settings.records.dir) / DEFAULT_NAME
    return None


def policy_for(settings: Settings) -> TollPolicy:
    out = settings.outbound
    return TollPolicy(
        allow=out.allow,
        allow_restricted=out.allow_restricted,
        account_allow=out.account_allow,
        home_country_code=out.home_country_code,
        max_concurrent=out.max_concurrent,
        max_per_destination_per_day=out.max_per_destination_per_day,
    )


class OutboundCalls:
    """The calls this process places (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        engine: SipEngine,
        new_session: SessionFactory,
        *,
        has_room: Callable[[], bool] = lambda: True,
        on_outcome: Callable[[str, str], None] = lambda outcome, rule: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``has_room``: whether the process can carry one more call (``sip.max_calls``,
        shared with the calls it takes, and the event loop's load); ``on_outcome(outcome,
        rule)``: told of each call that ended before a session existed (refused, with its
        rule; failed to dial)."""
        self.settings = settings
        self._has_room = has_room
        self._on_outcome = on_outcome
        self.engine = engine
        self.policy = policy_for(settings)
        path = ledger_path(settings)
        self.ledger = Ledger(path) if path is not None else None
        self._new_session = new_session
        self._clock = clock
        self.calls: OrderedDict[str, OutboundSession] = OrderedDict()
        #: Calls past the policy whose session does not exist yet (the ledger, the dial).
        self._starting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: False once the agent drains: new requests get ``NotAccepting``.
        self.accepting = True

    @property
    def active(self) -> int:
        return self._starting + sum(1 for s in self.calls.values() if not s.finished.is_set())

    def read(self, request: CallRequest) -> tuple[str, OutboundFacts]:
        """The request checked field by field (``read_request``)."""
        return read_request(self.settings, request)

    async def place(self, request: CallRequest) -> OutboundSession:
        """Check, count and place one call; returns its running session.

        Raises ``RequestError``, ``Refused``, ``NotAccepting`` or ``DialFailed``; none of
        them has sent anything.
        """
        profile, facts = self.read(request)
        if not self.accepting:
            raise NotAccepting("the agent is shutting down")
        target = parse_target(facts.target)
        refusal = self.policy.check_destination(target, facts.account)
        if refusal is None:
            refusal = self.policy.check_caps(self.active, 0, facts.target)
        if refusal is None and not self._has_room():
            refusal = Refusal(
                AT_CAPACITY,
                f"no room for another call: sip.max_calls ({self.settings.sip.max_calls}) "
                "in progress, in and out, or the event loop busier than sip.max_loop_busy",
            )
        if refusal is not None:
            raise self._refused(refusal, facts)
        self._starting += 1
        try:
            refusal = await self._count(
                destination_key(target, self.settings.outbound.home_country_code)
            )
            if refusal is not None:
                raise self._refused(refusal, facts)
            early = EarlyEvents()
            try:
                call = await self.engine.dial(
                    facts.dial_uri, early, account=facts.account, from_user=facts.from_number
                )
            except DialError as exc:
                log.warning(
                    "outbound_call_failed", target=facts.target, uri=facts.dial_uri, why=str(exc)
                )
                self._on_outcome(FAILED, "")
                raise DialFailed(str(exc)) from None
            try:
                session = self._new_session(call, facts, profile)
            except Exception:
                call.hang_up()  # an INVITE on its way with nobody to take the call: CANCEL
                raise
            early.replay(session)
        finally:
            self._starting -= 1
        self.calls[session.call_id] = session
        self._forget_old()
        task = asyncio.get_running_loop().create_task(
            session.run(), name=f"outbound-{session.call_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return session

    async def _count(self, destination: str) -> Refusal | None:
        """Count the call in the ledger; the refusal when the day's cap is reached."""
        cap = self.settings.outbound.max_per_destination_per_day
        if self.ledger is None:
            return Refusal(LEDGER_UNAVAILABLE, "no outbound ledger (records.dir is empty)")
        try:
            await asyncio.to_thread(self.ledger.reserve, destination, self._clock(), cap)
        except CapReached as exc:
            return self.policy.check_caps(0, exc.placed, destination) or Refusal(
                DAILY_CAP, f"{exc.placed} calls to {destination} in the last 24 hours"
            )
        except LedgerError as exc:
            return Refusal(LEDGER_UNAVAILABLE, str(exc))
        return None

    def _refused(self, refusal: Refusal, facts: OutboundFacts) -> Refused:
        # Once, here: a refused call has no session to log it.
        log.warning(
            "outbound_call_refused",
            target=facts.target,
            account=facts.account or None,
            rule=refusal.rule,
            detail=refusal.detail,
        )
        self._on_outcome(REFUSED, refusal.rule)
        return Refused(refusal)

    def _forget_old(self) -> None:
        finished = [cid for cid, s in self.calls.items() if s.finished.is_set()]
        for call_id in finished[: max(0, len(finished) - KEPT_FINISHED)]:
            del self.calls[call_id]

    @property
    def tasks(self) -> set[asyncio.Task[None]]:
        """The running calls' tasks (the drain waits for them)."""
        return set(self._tasks)

    def get(self, call_id: str) -> OutboundSession | None:
        return self.calls.get(call_id)

    async def wait_all(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout_s)


def parse_variables(pairs: Mapping[str, str] | list[str]) -> dict[str, str]:
    """``["k=v", ...]`` (``--var``) as a dict; raises ``RequestError``."""
    if isinstance(pairs, Mapping):
        return dict(pairs)
    variables: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise RequestError("variables", f"--var {pair[:80]!r}: expected NAME=VALUE")
        variables[name] = value
    return variables
