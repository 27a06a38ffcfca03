"""The call record: one JSON document per call, built at its end from what the call knew.

What is counted from the transcript (turns, tool calls) is counted from the very lines that
were written, so the record and the transcript cannot disagree. Times are ISO 8601 in UTC;
durations are milliseconds. Built without I/O (``RecordStore`` writes it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Bumped when a field changes meaning, so consumers can tell records apart.
RECORD_VERSION = 1


def iso_utc(unix_s: float | None) -> str | None:
    """``2026-05-01T12:00:00.123Z``, or None for a moment that never came."""
    if unix_s is None:
        return None
    moment = datetime.fromtimestamp(unix_s, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class CallFacts:
    """What the call session knows about one call at its end."""

    call_id: str
    sip_call_id: str
    caller: str
    dialed: str
    caller_uri: str
    dialed_uri: str
    profile: str
    provider: str
    protocol: str
    model: str
    invite_at: float
    answered_at: float | None
    ended_at: float
    ended_by: str
    reason: str
    sip_code: int | None
    barge_ins: int = 0
    #: Per agent turn: ms from the end of the caller's speech to the first agent audio heard.
    turn_latencies_ms: list[int] = field(default_factory=list)
    usage: Mapping[str, Any] | None = None
    rtp: Mapping[str, Any] | None = None
    transfer: Mapping[str, Any] | None = None
    transcript: str | None = None
    recording: Mapping[str, Any] | None = None
    #: "inbound" (a call the agent took) or "outbound" (one it placed).
    direction: str = "inbound"
    #: A placed call's target, outcome, ringing and timings (``agent.outbound.session``).
    outbound: Mapping[str, Any] | None = None
    #: Answering-machine detection of an outbound call: verdict, ``decided_ms`` after the
    #: answer, the beep (``beep_ms``) and the greeting's end; None when none ran.
    amd: Mapping[str, Any] | None = None


def _latency(latencies: list[int]) -> dict[str, Any]:
    ordered = sorted(latencies)
    summary: dict[str, Any] = {"turns_ms": list(latencies)}
    if ordered:
        summary["median_ms"] = ordered[len(ordered) // 2]
        summary["max_ms"] = ordered[-1]
    return summary


def _tool_calls(lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    keep = ("tool", "tool_call_id", "origin", "arguments", "outcome", "duration_ms", "error")
    return [
        {key: line[key] for key in keep if key in line}
        for line in lines
        if line.get("role") == "event" and line.get("kind") == "tool_call"
    ]


def build_call_record(facts: CallFacts, lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The record of one call; ``lines`` are its transcript lines as written."""
    caller_turns = [line for line in lines if line.get("role") == "caller"]
    agent_turns = [line for line in lines if line.get("role") == "agent"]
    answered = facts.answered_at
    return {
        "version": RECORD_VERSION,
        "call_id": facts.call_id,
        "sip_call_id": facts.sip_call_id,
        "direction": facts.direction,
        "caller": facts.caller,
        "dialed": facts.dialed,
        "caller_uri": facts.caller_uri,
        "dialed_uri": facts.dialed_uri,
        "profile": facts.profile,
        "provider": facts.provider,
        "protocol": facts.protocol,
        "model": facts.model,
        "times": {
            "invite": iso_utc(facts.invite_at),
            "answer": iso_utc(answered),
            "end": iso_utc(facts.ended_at),
            "ring_ms": round(((answered or facts.ended_at) - facts.invite_at) * 1000),
            "talk_ms": round((facts.ended_at - answered) * 1000) if answered else 0,
        },
        "ended_by": facts.ended_by,
        "reason": facts.reason,
        "sip_code": facts.sip_code,
        "turns": {
            "caller": len(caller_turns),
            "agent": len(agent_turns),
            "agent_interrupted": sum(1 for line in agent_turns if line.get("interrupted")),
        },
        "latency": _latency(facts.turn_latencies_ms),
        "barge_ins": facts.barge_ins,
        "tool_calls": _tool_calls(lines),
        "transfer": dict(facts.transfer) if facts.transfer is not None else None,
        "usage": dict(facts.usage) if facts.usage is not None else None,
        "rtp": dict(facts.rtp) if facts.rtp is not None else None,
        "transcript": facts.transcript,
        "recording": dict(facts.recording) if facts.recording is not None else None,
        "outbound": dict(facts.outbound) if facts.outbound is not None else None,
        "amd": dict(facts.amd) if facts.amd is not None else None,
    }
