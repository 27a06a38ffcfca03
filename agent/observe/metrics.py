"""The agent's Prometheus metrics: one registry per process, served at ``GET /metrics``.

Everything is counted where it is already known, never on the media path: a call's figures
when it ends (:class:`~agent.observe.call_metrics.CallMetrics`), a refused INVITE when the
request policy refuses it, a turn's first reply audio when the delta is read. Counters with
a fixed set of label values start at zero, so a rate is defined before the first call.

The registry is the process's own (not prometheus-client's global one): two apps in one
test process, or the local server's imports, never see each other's series.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from agent.bridge.outcome import AGENT, CALLER, FAR_END, TRANSFER
from agent.sip.request_policy import Answer

#: How a call that got a session went: answered, or ended before that by the caller
#: (cancelled) or by the agent (failed: the realtime session could not be opened, an error).
ANSWERED, CANCELLED, FAILED = "answered", "cancelled", "failed"
#: ``CallOutcome.ended_by`` values, as label values ("far end" has no space in a label).
ENDED_BY = {CALLER: "caller", AGENT: "agent", TRANSFER: "transfer", FAR_END: "far_end"}
#: The (outcome, ended_by) pairs that happen, shown at zero from the start.
CALL_SERIES = (
    *((ANSWERED, ended_by) for ended_by in ENDED_BY.values()),
    (CANCELLED, "caller"),
    (FAILED, "agent"),
    (FAILED, "far_end"),
)
#: Why an INVITE was refused before any session: the request policy's ``Answer.kind``.
REJECTIONS = (
    "at_capacity",
    "draining",
    "unknown_user",
    "replaces",
    "no_route",
    "not_allowed",
    "auth_failed",
    "dropped",
    "srtp_required",
    "overloaded",
)
#: An outbound call's outcomes (``agent.outbound.outcome``; not imported: the metrics name
#: them for the series shown at zero, the outbound package decides them).
OUTBOUND_OUTCOMES = ("answered", "busy", "no_answer", "rejected", "refused", "failed")
#: ``ToolRunner``'s outcomes.
TOOL_OUTCOMES = ("ok", "error", "timeout", "failed", "cancelled")

CONTENT_TYPE = CONTENT_TYPE_LATEST

_CALL_SECONDS = (5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
_CONNECT_SECONDS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
_GC_PAUSE_SECONDS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
_FIRST_AUDIO_SECONDS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def call_outcome(answered: bool, ended_by: str) -> str:
    """The ``outcome`` label of a call that had a session."""
    if answered:
        return ANSWERED
    return CANCELLED if ended_by == CALLER else FAILED


class AgentMetrics:
    """The metric families of one agent process, and the ways they change."""

    def __init__(
        self,
        active_calls: Callable[[], int],
        ready: Callable[[], bool],
        loop_busy: Callable[[], float] = lambda: 0.0,
    ) -> None:
        # The text format would show every counter's creation time as one more series.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        registry = self.registry
        # CPU seconds, resident memory, open file descriptors, start time of this process.
        ProcessCollector(registry=registry)
        Gauge(
            "voice_agent_active_calls", "Calls in progress (ringing or answered).",
            registry=registry,
        ).set_function(active_calls)  # fmt: skip
        Gauge(
            "voice_agent_ready", "1 while /readyz says ready (SIP up, backend reachable, "
            "not draining).", registry=registry,
        ).set_function(lambda: 1.0 if ready() else 0.0)  # fmt: skip
        Gauge(
            "voice_agent_loop_busy_ratio", "The event loop thread's CPU time over wall time in "
            "the last second; new calls get 503 above sip.max_loop_busy.", registry=registry,
        ).set_function(loop_busy)  # fmt: skip
        self.calls = Counter(
            "voice_agent_calls",
            "Calls that got a session, by outcome (answered, cancelled before the answer, "
            "failed before it) and who ended them.",
            ["outcome", "ended_by"],
            registry=registry,
        )
        for outcome, ended_by in CALL_SERIES:
            self.calls.labels(outcome, ended_by)
        self.rejected = Counter(
            "voice_agent_rejected_calls",
            "INVITEs refused before a session was opened, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in REJECTIONS:
            self.rejected.labels(reason)
        self.call_duration = Histogram(
            "voice_agent_call_duration_seconds",
            "Answered calls: from the answer to the end of the call.",
            buckets=_CALL_SECONDS,
            registry=registry,
        )
        self.realtime_connect = Histogram(
            "voice_agent_realtime_connect_seconds",
            "Opening a realtime session until it took the configuration (while the call rings).",
            buckets=_CONNECT_SECONDS,
            registry=registry,
        )
        self.first_audio = Histogram(
            "voice_agent_first_audio_seconds",
            "Per caller turn: from the server's speech_stopped to the reply's first audio.",
            buckets=_FIRST_AUDIO_SECONDS,
            registry=registry,
        )
        self.gc_pause = Histogram(
            "voice_agent_gc_pause_seconds",
            "Garbage collections, by generation: how long each stopped the event loop, and "
            "with it every call's audio.",
            ["generation"],
            buckets=_GC_PAUSE_SECONDS,
            registry=registry,
        )
        self.barge_ins = Counter(
            "voice_agent_barge_ins",
            "Caller turns that cut agent audio short.",
            registry=registry,
        )
        self.lost_frames = Counter(
            "voice_agent_lost_frames",
            "20 ms frames lost: to_caller counts gaps inside the agent's replies (audio that "
            "was due and came late).",
            ["direction"],
            registry=registry,
        )
        self.lost_frames.labels("to_caller")
        self.tool_calls = Counter(
            "voice_agent_tool_calls",
            "Tool calls (the model's and DTMF actions), by outcome.",
            ["outcome"],
            registry=registry,
        )
        for outcome in TOOL_OUTCOMES:
            self.tool_calls.labels(outcome)
        self.outbound_calls = Counter(
            "voice_agent_outbound_calls",
            "Calls the agent placed or was asked to place, by outcome (answered, busy, "
            "no_answer, rejected, refused by the toll-fraud guard, failed).",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTBOUND_OUTCOMES:
            self.outbound_calls.labels(outcome)
        self.outbound_refused = Counter(
            "voice_agent_outbound_refused",
            "Outbound calls the toll-fraud guard refused before any INVITE, by rule.",
            ["rule"],
            registry=registry,
        )
        self.registration = Gauge(
            "voice_agent_registration_up",
            "1 while the SIP account's registration is current, 0 while it is not; one "
            "series per account that registers (none are configured yet).",
            ["account"],
            registry=registry,
        )

    def call_rejected(self, answer: Answer) -> None:
        """An INVITE the request policy (or the app) refused with ``answer``."""
        self.rejected.labels(answer.kind or str(answer.code)).inc()

    def outbound_call(self, outcome: str, rule: str = "") -> None:
        """An outbound call's ``outcome`` (``rule``: the toll-fraud rule that refused it)."""
        self.outbound_calls.labels(outcome).inc()
        if rule:
            self.outbound_refused.labels(rule).inc()

    def observe_gc(self, seconds: float, generation: int) -> None:
        """A garbage collection that stopped the loop for ``seconds``."""
        self.gc_pause.labels(str(generation)).observe(seconds)

    def registration_state(self, account: str, registered: bool) -> None:
        self.registration.labels(account).set(1.0 if registered else 0.0)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
