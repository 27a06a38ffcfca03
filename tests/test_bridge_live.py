"""A GPT-Live call through CallBridge, in memory, with a fake clock in milliseconds.

The model's side speaks GPT-Live wire JSON through the Live adapter, and every event either
way is checked against ``openai.types.live``. Also here: what both protocols share and only
the newer sessions have (rollover with the conversation carried over, server-side MCP
approvals, the newer session settings).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from agent.audio.codecs import PCMU
from agent.bridge import BridgeConfig, CallBridge, Step
from agent.bridge.actions import Delegate, Note, Rollover
from agent.bridge.requests import ConfigureSession, SessionSpec, Turn
from agent.live.adapter import LiveAdapter
from agent.realtime.adapter import RealtimeAdapter
from agent.realtime.dialect import Dialect
from testbed.oracle import LIVE, validate_client_event, validate_server_event

FRAME = 160
SILENCE = bytes(FRAME * 2)
TOOL = {
    "type": "function",
    "name": "transfer_call",
    "description": "Transfer the caller to a colleague.",
    "parameters": {"type": "object", "properties": {}},
}
#: The bridge's clock starts at 0; the wall clock at this Unix time (ms).
WALL_MS = 1_900_000_000_000


def _tone(ms: int, level: int = 1200) -> bytes:
    return PCMU.encode(level.to_bytes(2, "little", signed=True) * (ms * 8))


def _level(pcm: bytes) -> int:
    if not pcm:
        return 0
    return max(
        abs(int.from_bytes(pcm[i : i + 2], "little", signed=True)) for i in range(0, len(pcm), 2)
    )


class LiveCall:
    """The bridge of one PCMU call on GPT-Live, and the model's side on the wire."""

    def __init__(self, **config: Any) -> None:
        spec = SessionSpec("Be brief.", "marin", tools=[TOOL], model="gpt-live-1.1")
        self.bridge = CallBridge(
            BridgeConfig(
                session=spec,
                greeting="Say hello.",
                protocol="live",
                wall_offset_ms=WALL_MS,
                **config,
            )
        )
        self.adapter = LiveAdapter()
        self.now = 0.0
        self.sent: list[dict[str, Any]] = []
        self.actions: list[Any] = []
        self.lines: list[dict[str, Any]] = []
        self.heard = bytearray()
        self._event = 0

    def take(self, step: Step) -> list[dict[str, Any]]:
        wire = [
            json.loads(text) for request in step.requests for text in self.adapter.encode(request)
        ]
        for event in wire:
            validate_client_event(LIVE, event)
        self.sent += wire
        self.actions += step.actions
        self.lines += step.lines
        return wire

    def server(self, event_type: str, **fields: Any) -> list[dict[str, Any]]:
        self._event += 1
        event = {"type": event_type, **fields}
        if event_type != "session.output_audio.delta":
            event["event_id"] = f"event_{self._event}"
        validate_server_event(LIVE, event)
        sent: list[dict[str, Any]] = []
        for internal in self.adapter.parse(json.dumps(event)):
            sent += self.take(self.bridge.server_event(internal, self.now))
        return sent

    def started(self, expires_s: float = WALL_MS / 1000 + 3600) -> None:
        pcmu = {"format": {"type": "audio/pcmu", "rate": 8000}}
        session = {"id": "sess_1", "expires_at": int(expires_s), "model": "gpt-live-1.1",
                   "status": "active", "audio": pcmu}  # fmt: skip
        self.server("session.started", session=session)

    def audio(self, ms: int, level: int = 1200) -> None:
        delta = base64.b64encode(_tone(ms, level)).decode()
        self.server("session.output_audio.delta", delta=delta)

    def said(self, text: str, kind: str = "output") -> list[dict[str, Any]]:
        return self.server(
            f"session.{kind}_transcript.delta", delta=text, start_ms=0, end_ms=int(self.now)
        )

    def pull(self, frames: int) -> None:
        for _ in range(frames):
            self.heard += self.bridge.playout.pull()
            self.now += 20
            self.take(self.bridge.tick(self.now))

    def answer(self) -> None:
        """Open the session, negotiate PCMU, take the ACK (the shell's order)."""
        self.take(self.bridge.session_config())
        self.take(self.bridge.media_started("PCMU", 8000))
        self.started()
        self.take(self.bridge.call_confirmed(self.now))

    def kinds(self) -> list[str]:
        return [event["type"] for event in self.sent]

    def notes(self, event: str) -> list[Note]:
        return [a for a in self.actions if isinstance(a, Note) and a.event == event]


def test_the_session_starts_in_the_call_codec_once_it_is_known() -> None:
    call = LiveCall()
    # The session is open but its format is fixed at start: nothing goes out before the SDP.
    assert call.take(call.bridge.session_config()) == []
    assert call.bridge.config_waiting
    (start,) = call.take(call.bridge.media_started("PCMU", 8000))
    assert not call.bridge.config_waiting
    assert start["type"] == "session.start"
    assert start["session"]["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    assert (
        "- transfer_call: Transfer the caller to a colleague." in start["session"]["instructions"]
    )
    call.started()
    # The greeting is an instruction; GPT-Live answers it on its own.
    (greet,) = call.take(call.bridge.call_confirmed(call.now))
    assert (greet["type"], greet["content"]) == ("session.instructions.append", "Say hello.")


def test_mu_law_passes_through_both_ways_without_a_resampler() -> None:
    call = LiveCall()
    call.answer()
    pcm = (900).to_bytes(2, "little", signed=True) * FRAME
    (append,) = call.take(call.bridge.caller_frame(pcm, call.now))
    assert append["type"] == "session.input_audio.append"
    assert base64.b64decode(append["audio"]) == PCMU.encode(pcm)  # 160 bytes, no resampling
    call.audio(400)
    call.pull(20)
    assert len(call.heard) == 20 * FRAME * 2
    assert _level(bytes(call.heard)) > 1000  # the agent was heard, at its own level


def test_the_caller_taking_the_floor_drops_what_was_sent_ahead() -> None:
    call = LiveCall()
    call.answer()
    call.audio(3000)  # sent ahead of playout, as GPT-Live does
    call.said("It is on its way and should arrive soon.")
    call.pull(37)  # 740 ms heard
    # The caller's words arrive while the server's audio has stopped: it yielded.
    call.said("wait", kind="input")
    assert call.bridge.playout.pull() == SILENCE  # silent within one frame
    assert call.bridge.interruptions == 1
    (cut,) = [line for line in call.lines if line.get("interrupted")]
    assert cut["heard_ms"] == 740 and cut["cut_by"] == "barge-in"
    assert cut["text"] == "It is on"
    # GPT-Live owns the conversation: no truncate or cancel goes out.
    assert "conversation.item.truncate" not in call.kinds()
    assert [n.fields["audio_end_ms"] for n in call.notes("barge_in")] == [740]


def test_a_backchannel_the_model_talks_on_over_does_not_cut_it() -> None:
    call = LiveCall()
    call.answer()
    for tick in range(60):  # the server streams its audio as it goes, 40 ms at a time
        call.audio(40)
        if tick == 20:
            call.said("mm-hm", kind="input")  # the caller's "mm-hm" while the model talks on
        call.pull(2)
    assert call.bridge.interruptions == 0
    assert _level(bytes(call.heard[-200 * 16 :])) > 1000


def test_a_yield_waits_for_the_server_audio_to_stop() -> None:
    call = LiveCall()
    call.answer()
    call.audio(2000)
    call.pull(5)
    call.audio(40)  # audio still arriving at the moment the caller's words come
    call.said("hold on", kind="input")
    assert call.bridge.interruptions == 0 and call.bridge.playout.queued_samples > 0
    assert call.bridge.next_deadline == pytest.approx(call.now + 100)
    call.pull(5)  # 100 ms without audio: the server yielded
    assert call.bridge.interruptions == 1 and call.bridge.playout.queued_samples == 0


def test_a_delegation_runs_and_its_result_is_spoken() -> None:
    call = LiveCall()
    call.answer()
    call.said("Can I talk to a person?", kind="input")
    delegation = {"id": "item_d1", "type": "delegation", "target": "client"}
    call.server("session.delegation.created", offset_ms=900, delegation=delegation)
    (delegate,) = [a for a in call.actions if isinstance(a, Delegate)]
    assert delegate.delegation_id == "item_d1"
    assert delegate.request == "Can I talk to a person?"
    (result,) = call.take(call.bridge.delegation_result("item_d1", "You are being transferred."))
    assert result["type"] == "session.commentary.append"
    assert (result["delegation_id"], result["content"]) == ("item_d1", "You are being transferred.")
    (quiet,) = call.take(call.bridge.delegation_result("item_d1", "Ran lookup.", spoken=False))
    assert quiet["type"] == "session.thinking.append"


def test_keys_pressed_become_an_instruction_with_no_response_request() -> None:
    call = LiveCall()
    call.answer()
    before = len(call.sent)
    call.take(call.bridge.caller_dtmf("7", "rfc4733", call.now))
    call.pull(65)
    sent = call.sent[before:]
    assert [e["type"] for e in sent] == ["session.instructions.append"]
    assert sent[0]["content"] == "The caller pressed 7 on the phone keypad."


def _converse(call: LiveCall) -> None:
    call.said("Where is order 42?", kind="input")
    call.audio(200)
    call.said("It shipped today.")
    call.pull(20)
    call.said("Thanks.", kind="input")  # closes the agent's turn: its line is written
    call.pull(100)  # the caller stops talking; all is quiet


def test_a_session_is_replaced_at_a_quiet_moment_before_it_expires() -> None:
    call = LiveCall()
    call.take(call.bridge.session_config())
    call.take(call.bridge.media_started("PCMU", 8000))
    call.started(expires_s=WALL_MS / 1000 + 600)  # a 10-minute session
    call.take(call.bridge.call_confirmed(call.now))
    _converse(call)
    assert not [a for a in call.actions if isinstance(a, Rollover)]
    # Two minutes (at most a quarter of the life) before the end: 480 s in.
    call.now = 470_000.0
    call.pull(1)
    assert not [a for a in call.actions if isinstance(a, Rollover)]
    call.now = 480_000.0
    call.pull(1)
    assert len([a for a in call.actions if isinstance(a, Rollover)]) == 1
    call.pull(50)
    assert len([a for a in call.actions if isinstance(a, Rollover)]) == 1  # once

    # The replacement starts from the conversation so far.
    (configure,) = call.bridge.rollover_config().requests
    assert isinstance(configure, ConfigureSession)
    replacement = LiveAdapter()
    (start,) = replacement.wire(configure)
    validate_client_event(LIVE, start)
    texts = [(m["role"], m["content"][0]["text"]) for m in start["session"]["input"]]
    assert texts == [
        ("user", "Where is order 42?"),
        ("assistant", "It shipped today."),
        ("user", "Thanks."),  # still open: the old session would have closed it
    ]
    call.adapter = replacement
    call.take(call.bridge.rollover_done(call.now))
    assert call.notes("realtime_session_replaced")[0].fields["carried_turns"] == 3


def test_a_caller_turn_still_open_at_a_rollover_is_carried_and_written() -> None:
    call = LiveCall()
    call.answer()
    call.said("I would like to change my", kind="input")
    call.pull(100)  # 2 s: the server sends nothing more, and has not answered yet
    (configure,) = call.bridge.rollover_config().requests
    assert isinstance(configure, ConfigureSession)
    assert configure.spec.history[-1] == Turn("user", "I would like to change my")
    call.take(call.bridge.rollover_done(call.now))
    callers = [line for line in call.lines if line.get("role") == "caller"]
    assert [line["text"] for line in callers] == ["I would like to change my"]
    # Once written, it is not carried twice.
    assert call.bridge.book.history.count(Turn("user", "I would like to change my")) == 1


def test_a_rollover_waits_while_the_agent_speaks_but_not_past_the_forced_moment() -> None:
    call = LiveCall()
    call.take(call.bridge.session_config())
    call.take(call.bridge.media_started("PCMU", 8000))
    call.started(expires_s=WALL_MS / 1000 + 600)
    call.take(call.bridge.call_confirmed(call.now))
    call.now = 479_000.0
    while call.now < 584_000:  # the agent talks on, non-stop
        call.audio(1000)
        call.pull(50)
        assert not [a for a in call.actions if isinstance(a, Rollover)]
    call.audio(1000)
    call.pull(51)  # 585 s: 15 s before the end it goes ahead anyway
    rollovers = call.notes("realtime_session_rollover")
    assert [n.fields["forced"] for n in rollovers] == [True]


def test_a_realtime_rollover_carries_the_turns_as_conversation_items() -> None:
    spec = SessionSpec(
        "Be brief.", "marin", history=(Turn("user", "Hi."), Turn("assistant", "Hello!"))
    )
    for dialect in Dialect:
        events = RealtimeAdapter(dialect).wire(ConfigureSession(spec))
        for event in events:
            validate_client_event(dialect, event)
        assert [e["type"] for e in events] == ["session.update", *["conversation.item.create"] * 2]
        items = [e["item"] for e in events[1:]]
        assert [(i["role"], i["content"][0]["text"]) for i in items] == [
            ("user", "Hi."),
            ("assistant", "Hello!"),
        ]


def test_the_newer_session_settings_and_a_server_mcp_tool_are_valid_ga() -> None:
    mcp = {"type": "mcp", "server_label": "orders", "server_url": "https://mcp.example.com/",
           "require_approval": "always", "allowed_tools": ["lookup"]}  # fmt: skip
    spec = SessionSpec(
        "Be brief.", "marin", noise_reduction="near_field", noise_reduction_strength=0.7,
        speed=1.2, reasoning_effort="low", truncation="retention_ratio", retention_ratio=0.6,
        server_tools=[mcp],
    )  # fmt: skip
    (update,) = RealtimeAdapter(Dialect.GA).wire(ConfigureSession(spec))
    validate_client_event(Dialect.GA, update)
    session = update["session"]
    assert session["audio"]["output"]["speed"] == 1.2
    assert session["reasoning"] == {"effort": "low"}
    assert session["truncation"] == {"type": "retention_ratio", "retention_ratio": 0.6}
    assert session["tools"][-1] == mcp
    # Beta has none of them: they are left out rather than sent and refused.
    (beta,) = RealtimeAdapter(Dialect.BETA).wire(ConfigureSession(spec))
    validate_client_event(Dialect.BETA, beta)
    assert "reasoning" not in beta["session"] and "truncation" not in beta["session"]


class McpCall:
    """A GA Realtime bridge, for the server-side MCP approvals."""

    def __init__(self) -> None:
        spec = SessionSpec("Be brief.", "marin")
        self.bridge = CallBridge(BridgeConfig(session=spec, mcp_approve={"orders": ("lookup",)}))
        self.adapter = RealtimeAdapter(Dialect.GA)
        self.sent: list[dict[str, Any]] = []

    def server(self, event: dict[str, Any]) -> None:
        validate_server_event(Dialect.GA, event)
        for internal in self.adapter.parse(json.dumps(event)):
            step = self.bridge.server_event(internal, 0.0)
            for request in step.requests:
                for wire in self.adapter.wire(request):
                    validate_client_event(Dialect.GA, wire)
                    self.sent.append(wire)


@pytest.mark.parametrize(("tool", "approved"), [("lookup", True), ("delete_order", False)])
def test_server_mcp_approvals_follow_the_profile(tool: str, approved: bool) -> None:
    call = McpCall()
    item = {"id": "mcpr_1", "type": "mcp_approval_request", "server_label": "orders",
            "name": tool, "arguments": "{}"}  # fmt: skip
    call.server({"type": "conversation.item.added", "event_id": "e1", "item": item})
    responses = [e for e in call.sent if e["type"] == "conversation.item.create"]
    assert len(responses) == 1
    answer = responses[0]["item"]
    assert answer["type"] == "mcp_approval_response"
    assert (answer["approval_request_id"], answer["approve"]) == ("mcpr_1", approved)
    assert [e["type"] for e in call.sent][-1] == "response.create"
