"""Tools end to end: `voice-agent serve` in a real SIP call, the model's function calls emitted
by the local realtime server, SIPp and an RTP peer as the caller.

What the caller gets (BYE, REFER, RFC 4733 events) is read at the caller's side; what the
agent told the model is read from the local server's record of client events, each checked
against the protocol oracle.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.audio.levels import rms_dbfs
from agent.realtime.dialect import Dialect
from testbed.oracle import validate_client_event
from testbed.peers import REPO, AgentProcess, RtpPeer, engine_args, free_port, run_sipp
from testbed.recording import RecordedSession, RecordingServer
from testbed.responders import tone_responder

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(60)]

_REPLY_S = 1.6
_BILLING = "sip:billing@127.0.0.1:5999"
_HUMAN = "sip:frontdesk@127.0.0.1:5999"


TONE = tone_responder(_REPLY_S, "Here is a tone.")


def _profile(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tools.toml"
    path.write_text(
        f"""
[agent]
greeting = "Say hello."

[tools]
builtin = ["end_call", "transfer_call", "send_dtmf"]
dtmf_batch_ms = 400

[tools.transfer_destinations]
billing = "{_BILLING}"
human = "{_HUMAN}"

[tools.dtmf_actions]
"#" = "end_call"
{extra}
"""
    )
    return path


async def _agent(
    server: RecordingServer, profile: Path, dialect: Dialect, engine: str
) -> AgentProcess:
    args = ["--realtime-url", server.url_for(dialect), "--config", str(profile)]
    args += engine_args(engine)
    if dialect is Dialect.BETA:
        args += ["--dialect", "beta"]
    agent = AgentProcess(free_port(), args)
    await agent.start()
    return agent


async def _until(check: Callable[[], Any], what: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def _session(server: RecordingServer) -> RecordedSession:
    """The call's realtime session, once its first response (the greeting) has begun."""
    await _until(lambda: server.sessions, "the realtime session")
    session = server.sessions[0]
    await _until(lambda: _sent(session, "response.created"), "the greeting response")
    return session


def _sent(session: RecordedSession, kind: str) -> list[dict[str, Any]]:
    return [event for event in session.sent if event["type"] == kind]


async def _model_calls(
    session: RecordedSession, name: str, args: dict[str, Any], call_id: str
) -> None:
    """Emit what the model sends when it calls ``name`` in its current response."""
    response_id = _sent(session, "response.created")[-1]["response"]["id"]
    ids = {"response_id": response_id, "item_id": f"item_{call_id}", "output_index": 1}
    item = {
        "id": ids["item_id"],
        "type": "function_call",
        "object": "realtime.item",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps(args),
    }
    await session.emit({"type": "response.output_item.added", **ids, "item": item})
    done = {"type": "response.function_call_arguments.done", **ids, "call_id": call_id}
    done["arguments"] = item["arguments"]
    if session.dialect is Dialect.GA:
        done["name"] = name  # the beta event has no name: the agent takes it from the item
    await session.emit(done)


def _output(session: RecordedSession, call_id: str) -> str | None:
    for event in session.received:
        item = event.get("item") or {}
        if item.get("type") == "function_call_output" and item.get("call_id") == call_id:
            return str(item["output"])
    return None


async def _await_output(session: RecordedSession, call_id: str, timeout_s: float = 10.0) -> str:
    return await _until(lambda: _output(session, call_id), f"the output of {call_id}", timeout_s)


def _check_client_events(session: RecordedSession) -> None:
    for event in session.received:
        validate_client_event(session.dialect, event)


def _loud_ms(peer: RtpPeer) -> int:
    return 20 * sum(rms_dbfs(peer.decode(packet)) > -42 for packet in peer.packets)


async def test_end_call_hangs_up_after_the_goodbye_was_heard(engine: str, tmp_path: Path) -> None:
    async with RecordingServer(responder_factory=TONE) as server:
        agent = await _agent(server, _profile(tmp_path), Dialect.GA, engine)
        peer = await RtpPeer.open()
        try:
            call = asyncio.create_task(
                run_sipp("uac_peer_wait_bye.xml", agent.sip_port, keys=peer.sipp_keys())
            )
            session = await _session(server)
            # The model says goodbye (the greeting's tone) and ends the call in one response.
            await _model_calls(session, "end_call", {"reason": "caller is done"}, "call_end")
            result = await call
            assert result.returncode == 0, result.output[-2000:]  # the caller got a BYE
            # The whole reply reached the caller before the BYE stopped the media.
            assert _loud_ms(peer) >= _REPLY_S * 1000 - 60, _loud_ms(peer)
            output = await _await_output(session, "call_end")
            assert output == "The call has ended (caller is done)."
            # Nothing more is asked of the model once the call ends.
            kinds = [event["type"] for event in session.received]
            assert "response.create" not in kinds[kinds.index("conversation.item.create") :]
            _check_client_events(session)
            line = (await agent.wait_for("tool_call", 5))[0]
            assert line["tool"] == "end_call" and line["outcome"] == "ok"
            assert line["duration_ms"] >= 500  # it waited for the tone to play out
            # Logged and recorded as what it was, not as the SIP code of the BYE.
            finished = (await agent.wait_for("call_finished", 5))[0]
            assert (finished["ended_by"], finished["reason"]) == (
                "agent",
                "end_call: caller is done",
            )
            end = agent.transcripts()[0][-1]
            assert end["kind"] == "call_end" and end["ended_by"] == "agent"
        finally:
            peer.close()
            assert await agent.stop() == 0


async def test_transfer_sends_refer_to_the_allowlisted_uri_and_ends_the_leg(
    engine: str, tmp_path: Path
) -> None:
    async with RecordingServer(responder_factory=TONE) as server:
        agent = await _agent(server, _profile(tmp_path), Dialect.GA, engine)
        peer = await RtpPeer.open()
        try:
            call = asyncio.create_task(
                run_sipp(
                    "uac_transfer.xml",
                    agent.sip_port,
                    keys=peer.sipp_keys(),
                    fill={"notify_status": "200 OK"},
                    workdir=tmp_path,
                    extra_args=["-trace_logs"],
                )
            )
            session = await _session(server)
            await _model_calls(session, "transfer_call", {"destination": "billing"}, "xfer")
            result = await call
            assert result.returncode == 0, result.output[-2000:]
            refer_to = [
                line.split("refer_to=", 1)[1].strip()
                for log in tmp_path.glob("uac_transfer_*_logs.log")
                for line in log.read_text().splitlines()
                if "refer_to=" in line
            ]
            assert refer_to == [_BILLING]
            assert await _await_output(session, "xfer") == "The caller was transferred to billing."
            _check_client_events(session)
            # The NOTIFY progress, in order: ringing, then the outcome. SIPp may exit before
            # the agent has logged the last NOTIFY it answered: that line is waited for.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(
                s["final"] for s in agent.events("sip_transfer_status")
            ):
                await asyncio.sleep(0.05)
            statuses = [(s["code"], s["final"]) for s in agent.events("sip_transfer_status")]
            assert statuses[-1] == (200, True), statuses
            assert statuses.index((180, False)) < statuses.index((200, True)), statuses
            finished = (await agent.wait_for("call_finished", 5))[0]
            assert (finished["ended_by"], finished["reason"]) == (
                "transfer",
                f"transferred to {_BILLING}",
            )
        finally:
            peer.close()
            assert await agent.stop() == 0


async def test_unknown_destination_is_refused_and_a_failed_transfer_keeps_the_call(
    engine: str, tmp_path: Path
) -> None:
    async with RecordingServer(responder_factory=TONE) as server:
        agent = await _agent(server, _profile(tmp_path), Dialect.GA, engine)
        peer = await RtpPeer.open()
        try:
            call = asyncio.create_task(
                run_sipp(
                    "uac_transfer_fails.xml",
                    agent.sip_port,
                    keys=peer.sipp_keys(),
                    fill={
                        "notify_status": "486 Busy Here",
                        "notify_after_ms": "200",
                        "call_ms": "1500",
                    },
                    workdir=tmp_path,
                    extra_args=["-trace_logs"],
                )
            )
            session = await _session(server)
            # A caller talked the model into a number of their own: refused, nothing sent.
            await _model_calls(session, "transfer_call", {"destination": "+19005550100"}, "x1")
            refused = await _await_output(session, "x1")
            assert refused.startswith("Error: invalid arguments for transfer_call")
            assert "not one of 'billing', 'human'" in refused
            assert not agent.events("sip_transfer_sent")
            await _model_calls(session, "transfer_call", {"destination": "human"}, "x2")
            failed = await _await_output(session, "x2")
            assert "failed (486 Busy Here)" in failed and "still on the line" in failed
            # The model is asked to carry on with the caller.
            await _until(
                lambda: _sent(session, "response.created")[1:], "a response after the failure"
            )
            result = await call  # the caller hangs up; a BYE from the agent would fail it
            assert result.returncode == 0, result.output[-2000:]
            refer_to = [
                line.split("refer_to=", 1)[1].strip()
                for log in tmp_path.glob("uac_transfer_fails_*_logs.log")
                for line in log.read_text().splitlines()
                if "refer_to=" in line
            ]
            assert refer_to == [_HUMAN]
            _check_client_events(session)
            records = agent.transcripts()
            kinds = [line.get("kind") for line in records[0]]
            assert kinds.count("tool_call") == 2 and "transfer_status" in kinds
        finally:
            peer.close()
            assert await agent.stop() == 0


@pytest.mark.parametrize(
    "dialect", [Dialect.GA, pytest.param(Dialect.BETA, marks=pytest.mark.above_sip)]
)
async def test_send_dtmf_reaches_the_caller_as_rfc4733_events(
    dialect: Dialect, engine: str, tmp_path: Path
) -> None:
    async with RecordingServer(responder_factory=TONE) as server:
        agent = await _agent(server, _profile(tmp_path), dialect, engine)
        peer = await RtpPeer.open()
        try:
            call = asyncio.create_task(
                run_sipp(
                    "uac_peer.xml",
                    agent.sip_port,
                    keys=peer.sipp_keys(),
                    fill={"call_ms": "3000"},
                    workdir=tmp_path,
                )
            )
            session = await _session(server)
            await _model_calls(session, "send_dtmf", {"digits": "9x"}, "d0")
            assert (await _await_output(session, "d0")).startswith("Error: digits must be from")
            await _model_calls(session, "send_dtmf", {"digits": "12#"}, "d1")
            assert await _await_output(session, "d1") == "Sent the DTMF digits 12#."
            await _until(lambda: len(peer.telephone_events()) >= 3, "three DTMF events", 5)
            result = await call
            assert result.returncode == 0, result.output[-2000:]
            assert peer.telephone_events() == ["1", "2", "#"]
            _check_client_events(session)
        finally:
            peer.close()
            assert await agent.stop() == 0


async def test_caller_dtmf_reaches_the_model_and_a_mapped_key_ends_the_call(
    engine: str, tmp_path: Path
) -> None:
    async with RecordingServer(responder_factory=TONE) as server:
        agent = await _agent(server, _profile(tmp_path), Dialect.GA, engine)
        peer = await RtpPeer.open()
        try:
            call = asyncio.create_task(
                run_sipp(
                    "uac_info_dtmf_wait_bye.xml",
                    agent.sip_port,
                    keys=peer.sipp_keys(),
                    fill={"info_digit": "7", "info_after_ms": "300"},
                    workdir=tmp_path,
                )
            )
            session = await _session(server)

            def told(text: str) -> Callable[[], bool]:
                def check() -> bool:
                    return any(
                        part.get("text") == text
                        for event in session.received
                        if event["type"] == "conversation.item.create"
                        for part in event["item"].get("content", [])
                    )

                return check

            # SIP INFO (application/dtmf-relay), reported by pjsua like an RTP event.
            await _until(told("The caller pressed 7 on the phone keypad."), "the INFO digit")
            # RFC 4733 from the caller's RTP, two keys in quick succession: one message.
            await peer.send_dtmf("42")
            await _until(told("The caller pressed 4 2 on the phone keypad."), "the RTP digits")

            def answered() -> bool:
                kinds = [event["type"] for event in session.received]
                return "response.create" in kinds[kinds.index("conversation.item.create") :]

            # The model is asked to answer (once the greeting it was speaking is done).
            await _until(answered, "a response to the keys")
            # "#" is mapped to end_call: the agent hangs up without asking the model.
            await peer.send_dtmf("#")
            result = await call
            assert result.returncode == 0, result.output[-2000:]
            _check_client_events(session)
            await agent.wait_for("call_finished", 5)
            records = agent.transcripts()[0]
            dtmf = [
                (line["digit"], line["method"]) for line in records if line.get("kind") == "dtmf"
            ]
            assert dtmf == [("7", "info"), ("4", "rfc4733"), ("2", "rfc4733"), ("#", "rfc4733")]
            action = [line for line in records if line.get("kind") == "tool_call"]
            assert action[0]["tool"] == "end_call" and action[0]["origin"] == "dtmf:#"
        finally:
            peer.close()
            assert await agent.stop() == 0


@pytest.mark.above_sip
async def test_custom_and_mcp_tools_are_called_in_a_real_call(engine: str, tmp_path: Path) -> None:
    extra = f"""
[tools.redact]
pay_invoice = ["card_number"]

[[tools.custom]]
function = "tools_example:order_status"

[[tools.custom]]
function = "tools_example:pay_invoice"

[[tools.mcp]]
name = "crm"
command = ["{sys.executable}", "{REPO / "tests" / "mcp_server.py"}"]
prefix = "crm_"
"""
    profile = _profile(tmp_path, extra)
    text = profile.read_text().replace(
        "[tools]\n", f'[tools]\npython_path = ["{REPO / "config" / "examples"}"]\n', 1
    )
    profile.write_text(text)
    async with RecordingServer(responder_factory=TONE) as server:
        agent = await _agent(server, profile, Dialect.GA, engine)
        peer = await RtpPeer.open()
        try:
            call = asyncio.create_task(
                run_sipp(
                    "uac_peer.xml",
                    agent.sip_port,
                    keys=peer.sipp_keys(),
                    fill={"call_ms": "3500"},
                    workdir=tmp_path,
                )
            )
            session = await _session(server)
            update = session.received[0]
            assert update["type"] == "session.update"
            names = [tool["name"] for tool in update["session"]["tools"]]
            assert names[:3] == ["end_call", "transfer_call", "send_dtmf"]
            assert {"order_status", "pay_invoice", "crm_account_balance"} <= set(names)
            await _model_calls(session, "order_status", {"order_id": "A1001"}, "o1")
            await _model_calls(session, "crm_account_balance", {"account": "12"}, "m1")
            card = {"invoice": "I-1", "card_number": "4000123412341234", "amount": 3}
            await _model_calls(session, "pay_invoice", card, "p1")
            assert await _await_output(session, "o1") == "Order A1001 is shipped on Monday."
            assert await _await_output(session, "m1") == "Account 12 has a balance of 42.50 EUR."
            assert "ending 1234" in await _await_output(session, "p1")
            result = await call
            assert result.returncode == 0, result.output[-2000:]
            _check_client_events(session)
            await agent.wait_for("call_finished", 5)
            assert "4000123412341234" not in "\n".join(agent.raw)
            records = agent.transcripts()[0]
            assert "4000123412341234" not in json.dumps(records)
            calls = {line["tool"]: line for line in records if line.get("kind") == "tool_call"}
            assert calls["pay_invoice"]["arguments"]["card_number"] == "***"
            assert all(line["outcome"] == "ok" for line in calls.values())
        finally:
            peer.close()
            assert await agent.stop() == 0
