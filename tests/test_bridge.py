"""A whole call through CallBridge, in memory, with a fake clock in milliseconds.

The model's side speaks wire JSON in each dialect, through the Realtime adapter, and every
event either way is checked against the ``openai`` package's models; the SIP side is the
bridge's playout, pulled 20 ms at a time as the engine's media clock would. No sockets, no
event loop: the bridge is the call's decisions alone.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
import time
from typing import Any

import pytest

from agent.audio.codecs import PCMU
from agent.bridge import BridgeConfig, CallBridge, Step
from agent.bridge.actions import HangUp, HungUp, Note, Reconnect, RunTool
from agent.bridge.bridge import NOTICE_ITEM, RESUME_INSTRUCTIONS
from agent.bridge.requests import ConfigureSession, SessionSpec
from agent.bridge.transcript import heard_prefix
from agent.realtime.adapter import RealtimeAdapter
from agent.realtime.dialect import Dialect, OutputEvent, wire_name
from testbed.oracle import validate_client_event, validate_server_event

FRAME = 160
SILENCE = bytes(FRAME * 2)
TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look something up.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}


class FakeCall:
    """The bridge of one PCMU call with G.711 passthrough, and the model's side on the wire."""

    def __init__(self, dialect: Dialect, **config: Any) -> None:
        self.dialect = dialect
        self.adapter = RealtimeAdapter(dialect)
        spec = SessionSpec("Be brief.", "marin", turn_detection={"type": "server_vad"})
        self.bridge = CallBridge(
            BridgeConfig(session=spec, g711_passthrough=True, greeting="Say hello.", **config)
        )
        self.now = 0.0
        self.sent: list[dict[str, Any]] = []
        self.actions: list[Any] = []
        self.lines: list[dict[str, Any]] = []
        self.heard = bytearray()
        self._event = 0

    # -- carrying out a step, as the shell does ----------------------------------------------
    def take(self, step: Step) -> list[dict[str, Any]]:
        wire = [
            json.loads(text) for request in step.requests for text in self.adapter.encode(request)
        ]
        for event in wire:
            validate_client_event(self.dialect, event)
        self.sent += wire
        self.actions += step.actions
        self.lines += step.lines
        return wire

    def server(self, event_type: str, **fields: Any) -> list[dict[str, Any]]:
        self._event += 1
        event = {"type": event_type, "event_id": f"event_{self._event}", **fields}
        validate_server_event(self.dialect, event)
        parsed = self.adapter.parse(json.dumps(event))
        assert parsed, event_type
        sent: list[dict[str, Any]] = []
        for internal in parsed:
            sent += self.take(self.bridge.server_event(internal, self.now))
        return sent

    def output(self, kind: OutputEvent, **fields: Any) -> list[dict[str, Any]]:
        return self.server(wire_name(self.dialect, kind), **fields)

    def pull(self, frames: int) -> None:
        """``frames`` media ticks: the line plays, the clock moves, the bridge ticks."""
        for _ in range(frames):
            self.heard += self.bridge.playout.pull()
            self.now += 20
            self.take(self.bridge.tick(self.now))

    # -- the model's events, with the fields the openai models require -------------------------
    def response_created(self, response_id: str, request: dict[str, Any] | None = None) -> None:
        metadata = ((request or {}).get("response") or {}).get("metadata")
        response = {"id": response_id, "object": "realtime.response", "status": "in_progress",
                    "output": [], "metadata": metadata}  # fmt: skip
        self.server("response.created", response=response)

    def response_done(self, response_id: str) -> list[dict[str, Any]]:
        response = {"id": response_id, "object": "realtime.response", "status": "completed",
                    "output": []}  # fmt: skip
        return self.server("response.done", response=response)

    def speak(self, response_id: str, item_id: str, ms: int, text: str = "Hello there.") -> None:
        """An item of ``ms`` of the model's (passthrough, mu-law) audio and its transcript."""
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0,
                 "content_index": 0}  # fmt: skip
        pcm = (1200).to_bytes(2, "little", signed=True) * (ms * 8)
        delta = base64.b64encode(PCMU.encode(pcm)).decode()
        self.output(OutputEvent.AUDIO_DELTA, delta=delta, **where)
        self.output(OutputEvent.TRANSCRIPT_DELTA, delta=text, **where)
        self.output(OutputEvent.AUDIO_DONE, **where)
        self.output(OutputEvent.TRANSCRIPT_DONE, transcript=text, **where)

    def speech_started(self, item_id: str = "item_user") -> list[dict[str, Any]]:
        return self.server(
            "input_audio_buffer.speech_started", audio_start_ms=int(self.now), item_id=item_id
        )

    # -- the call's beginning, as the shell drives it ---------------------------------------
    def answer(self) -> None:
        self.take(self.bridge.session_config())
        self.server("session.updated", session=self._session())
        self.take(self.bridge.media_started("PCMU", 8000))
        self.take(self.bridge.call_confirmed(self.now))

    def _session(self) -> dict[str, Any]:
        if self.dialect is Dialect.GA:
            return {"type": "realtime", "object": "realtime.session", "id": "sess_1"}
        return {"id": "sess_1", "object": "realtime.session"}

    def kinds(self) -> list[str]:
        return [event["type"] for event in self.sent]

    def notes(self, event: str) -> list[Note]:
        return [a for a in self.actions if isinstance(a, Note) and a.event == event]


DIALECTS = pytest.mark.parametrize("dialect", list(Dialect))


def _level(pcm: bytes) -> int:
    return max(
        abs(int.from_bytes(pcm[i : i + 2], "little", signed=True)) for i in range(0, len(pcm), 2)
    )


@DIALECTS
def test_a_whole_call_greeting_turn_barge_in_and_a_second_reply(dialect: Dialect) -> None:
    call = FakeCall(dialect)
    started = time.monotonic()
    call.answer()
    # The session is configured first, then switched to the call's own G.711, then greeted.
    assert call.kinds() == ["session.update", "session.update", "response.create"]
    assert call.sent[2]["response"]["instructions"] == "Say hello."

    call.response_created("resp_greet", call.sent[2])
    call.speak("resp_greet", "item_greet", 600, "Hello, how can I help?")
    call.response_done("resp_greet")
    call.pull(40)  # 800 ms: the greeting plays out whole
    assert _level(bytes(call.heard[: 600 * 16])) > 1000  # the caller heard it
    assert [line["text"] for line in call.lines if line.get("role") == "agent"] == [
        "Hello, how can I help?"
    ]

    # The caller talks: its audio reaches the model as the call's own mu-law.
    for _ in range(25):
        call.take(
            call.bridge.caller_frame((900).to_bytes(2, "little", signed=True) * FRAME, call.now)
        )
        call.pull(1)
    appends = [e for e in call.sent if e["type"] == "input_audio_buffer.append"]
    assert len(appends) == 25 and len(base64.b64decode(appends[0]["audio"])) == FRAME
    call.server("conversation.item.input_audio_transcription.completed", item_id="item_user",
                content_index=0, transcript="Where is my order?",
                usage={"type": "duration", "seconds": 1.0})  # fmt: skip
    assert {"role": "caller", "item_id": "item_user", "text": "Where is my order?"} in call.lines

    # The reply, interrupted 740 ms in: the truncate carries exactly what was handed out.
    call.response_created("resp_1")
    call.speak("resp_1", "item_1", 3000, "It is on its way and should arrive soon.")
    call.pull(37)
    before = len(call.sent)
    call.speech_started("item_user2")
    truncate = call.sent[before]
    assert truncate["type"] == "conversation.item.truncate"
    assert (truncate["item_id"], truncate["audio_end_ms"]) == ("item_1", 740)
    assert call.bridge.playout.pull() == SILENCE  # silent within one frame
    assert call.bridge.interruptions == 1 and len(call.notes("barge_in")) == 1
    # Late audio of the interrupted response is dropped.
    call.speak("resp_1", "item_1b", 500)
    assert call.bridge.playout.queued_samples == 0
    call.server("conversation.item.truncated", item_id="item_1", content_index=0,
                audio_end_ms=740)  # fmt: skip
    cut = [line for line in call.lines if line.get("interrupted")]
    assert cut[0]["heard_ms"] == 740 and cut[0]["cut_by"] == "barge-in"
    assert cut[0]["text"] == heard_prefix("It is on its way and should arrive soon.", 740, 3000)
    assert cut[0]["text"] == "It is on"
    call.response_done("resp_1")

    # A second response plays normally.
    call.response_created("resp_2")
    call.speak("resp_2", "item_2", 200, "Sorry, go on.")
    call.pull(15)
    assert _level(bytes(call.heard[-300 * 16 :])) > 1000
    assert time.monotonic() - started < 1.0


@DIALECTS
def test_a_function_call_its_output_and_the_follow_up_response(dialect: Dialect) -> None:
    call = FakeCall(dialect)
    call.answer()
    call.response_created("resp_1")
    item = {"id": "item_fc", "type": "function_call", "name": "lookup", "call_id": "call_1",
            "arguments": "", "status": "in_progress", "object": "realtime.item"}  # fmt: skip
    call.server("response.output_item.added", response_id="resp_1", output_index=0, item=item)
    done = {"response_id": "resp_1", "item_id": "item_fc", "output_index": 0,
            "call_id": "call_1", "arguments": '{"q": "x"}'}  # fmt: skip
    if dialect is Dialect.GA:
        done["name"] = "lookup"
    call.server("response.function_call_arguments.done", **done)
    runs = [a for a in call.actions if isinstance(a, RunTool)]
    assert [(r.name, r.call_id, r.arguments) for r in runs] == [("lookup", "call_1", '{"q": "x"}')]

    # The tool's output is added at once; the response for it waits for the active one.
    sent = call.take(call.bridge.tool_result("call_1", "found it"))
    assert [e["type"] for e in sent] == ["conversation.item.create"]
    assert sent[0]["item"] == {"id": sent[0]["item"]["id"], "type": "function_call_output",
                               "call_id": "call_1", "output": "found it"}  # fmt: skip
    follow_up = call.response_done("resp_1")
    assert [e["type"] for e in follow_up] == ["response.create"]
    call.response_created("resp_2", follow_up[0])
    assert call.response_done("resp_2") == []  # it answered the output: nothing more


@DIALECTS
def test_caller_dtmf_reaches_the_model_once_the_keys_stop(dialect: Dialect) -> None:
    call = FakeCall(dialect)
    call.answer()
    for digit in "42":
        call.take(call.bridge.caller_dtmf(digit, "rfc4733", call.now))
        call.pull(10)
    assert "conversation.item.create" not in call.kinds()  # still typing
    assert call.bridge.next_deadline == pytest.approx(call.now - 200 + 1200)
    call.pull(55)  # 1.2 s after the last key
    created = [e for e in call.sent if e["type"] == "conversation.item.create"]
    assert created[0]["item"]["content"][0]["text"] == (
        "The caller pressed 4 2 on the phone keypad."
    )
    assert call.kinds()[-1] == "response.create"
    assert [line["digit"] for line in call.lines if line.get("kind") == "dtmf"] == ["4", "2"]


@DIALECTS
def test_dtmf_actions_run_without_the_model(dialect: Dialect) -> None:
    call = FakeCall(dialect, dtmf_actions={"#": "end_call"})
    call.answer()
    call.take(call.bridge.caller_dtmf("#", "info", call.now))
    runs = [a for a in call.actions if isinstance(a, RunTool)]
    assert [(r.name, r.origin, json.loads(r.arguments)) for r in runs] == [
        ("end_call", "dtmf:#", {"reason": "the caller pressed #"})
    ]
    assert "conversation.item.create" not in call.kinds()


@DIALECTS
def test_end_call_waits_until_the_goodbye_has_been_heard(dialect: Dialect) -> None:
    call = FakeCall(dialect)
    call.answer()
    call.response_created("resp_bye")
    call.speak("resp_bye", "item_bye", 500, "Goodbye!")
    call.take(call.bridge.hang_up_when_quiet("end_call: done", call.now))
    call.response_done("resp_bye")
    hung_at = None
    for _ in range(40):
        call.pull(1)
        if any(isinstance(a, HangUp) for a in call.actions) and hung_at is None:
            hung_at = call.now
    # Not before the 500 ms goodbye has been handed to the line, plus the last frame's send.
    assert hung_at is not None and 500 + 40 <= hung_at <= 500 + 80
    assert any(isinstance(a, HungUp) for a in call.actions)
    assert (call.bridge.outcome.ended_by, call.bridge.outcome.reason) == ("agent", "end_call: done")


@DIALECTS
def test_a_lost_session_is_told_with_a_notice_then_reconnected(dialect: Dialect) -> None:
    call = FakeCall(dialect, reconnect_attempts=1)
    call.answer()
    call.take(call.bridge.session_lost("1006 ", call.now))
    assert any(isinstance(a, Reconnect) for a in call.actions)
    assert call.bridge.playout.current_item == NOTICE_ITEM
    call.pull(30)
    assert _level(bytes(call.heard)) > 1000  # the caller heard the beeps
    # The new session is configured like the first, and the model apologises.
    before = len(call.sent)
    call.take(call.bridge.session_config())
    call.server("session.updated", session=call._session())
    call.take(call.bridge.session_restored())
    kinds = call.kinds()[before:]
    assert kinds == ["session.update", "response.create"]
    assert call.sent[-1]["response"]["instructions"] == RESUME_INSTRUCTIONS
    # ... with the codec the call already uses (G.711 passthrough), not the first default.
    expected = dataclasses.replace(call.bridge.config.session, codec="pcmu")
    assert [call.sent[before]] == call.adapter.wire(ConfigureSession(expected))


@DIALECTS
def test_no_second_session_hangs_up_after_the_notice(dialect: Dialect) -> None:
    call = FakeCall(dialect, reconnect_attempts=0)
    call.answer()
    call.take(call.bridge.session_lost("1011 server error", call.now))
    assert not any(isinstance(a, Reconnect) for a in call.actions)
    call.pull(60)
    assert any(isinstance(a, HangUp) for a in call.actions)
    assert call.bridge.outcome.reason == "the realtime session was lost"


def test_no_caller_audio_or_reply_before_the_ack() -> None:
    call = FakeCall(Dialect.GA)
    call.take(call.bridge.session_config())
    call.server("session.updated", session=call._session())
    call.take(call.bridge.media_started("PCMU", 8000))
    assert call.bridge.caller_frame(SILENCE, 0).requests == []
    assert "response.create" not in call.kinds()


def test_importing_the_bridge_pulls_in_no_io() -> None:
    code = (
        "import sys, agent.bridge\n"
        "bad = [m for m in ('asyncio', 'socket', 'ssl', 'websockets', 'pjsua2', 'baresip',"
        " 'structlog') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


@DIALECTS
def test_a_recording_notice_plays_before_the_greeting_and_holds_caller_audio(
    dialect: Dialect,
) -> None:
    call = FakeCall(dialect)
    call.take(call.bridge.session_config())
    call.server("session.updated", session=call._session())
    call.take(call.bridge.media_started("PCMU", 8000))
    notice = (3000).to_bytes(2, "little", signed=True) * (8 * 300)  # 300 ms
    call.take(call.bridge.call_confirmed(call.now, notice))
    assert "response.create" not in call.kinds()
    for _ in range(10):  # the caller talks over the notice: the model hears none of it
        call.take(call.bridge.caller_frame(SILENCE, call.now))
        call.pull(1)
    assert "input_audio_buffer.append" not in call.kinds() and "response.create" not in call.kinds()
    call.pull(6)
    assert _level(bytes(call.heard[: 300 * 16])) == 3000  # heard whole, uncut
    assert call.kinds().count("response.create") == 1  # then the greeting
    call.take(call.bridge.caller_frame(SILENCE, call.now))
    assert "input_audio_buffer.append" in call.kinds()


@DIALECTS
def test_turn_latency_counts_from_the_vad_s_end_of_speech_to_the_reply_on_the_line(
    dialect: Dialect,
) -> None:
    call = FakeCall(dialect)
    call.answer()
    for _ in range(50):  # 1 s of caller audio appended
        call.take(call.bridge.caller_frame(SILENCE, call.now))
        call.pull(1)
    # The VAD says the caller stopped 600 ms into the audio: 400 ms ago.
    call.server("input_audio_buffer.speech_stopped", audio_end_ms=600, item_id="item_user")
    call.pull(10)  # 200 ms later the reply arrives, and plays at once
    call.response_created("resp_1")
    call.speak("resp_1", "item_1", 400)
    call.pull(3)
    assert len(call.bridge.turns.latencies_ms) == 1
    assert abs(call.bridge.turns.latencies_ms[0] - 620) <= 20
