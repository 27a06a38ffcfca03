"""GPT-Live end to end: a real SIP call, the agent on ``--protocol live`` against the local
server's GPT-Live and Responses endpoints.

The call is PCMU and the session takes the call's own mu-law (no resampler in either
direction); the agent's audio reaches the caller; the caller's request is delegated, runs the
transfer tool through the Responses WebSocket and transfers the call; and when the caller
talks over the agent, the agent's RTP stops within 40 ms of the server's first transcript of
the caller (the agent's only sign that the server gave the caller the floor).
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import pytest

from agent.audio.levels import rms_dbfs
from agent.local.backend import Backend
from agent.local.replies import Reply, ReplyRequest
from testbed.oracle import LIVE, validate_client_event
from testbed.peers import (
    AgentProcess,
    RtpPeer,
    engine_args,
    free_port,
    peer_call,
    run_sipp,
    talk_then_pause,
)
from testbed.recording import RecordedSession, RecordingServer
from testbed.scripted import HeardTranscriber, scripted_backend
from tests.local_helpers import tone

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(60)]

_SALES = "sip:sales@127.0.0.1:5999"
_PCMU = {"type": "audio/pcmu", "rate": 8000}


def _profile(tmp_path: Path) -> Path:
    path = tmp_path / "live.toml"
    path.write_text(
        f"""
[agent]
greeting = "Say hello."

[tools]
builtin = ["end_call", "transfer_call"]

[tools.transfer_destinations]
sales = "{_SALES}"
"""
    )
    return path


async def _agent(server: RecordingServer, profile: Path, engine: str) -> AgentProcess:
    args = ["--realtime-url", server.live_url, "--protocol", "live", "--config", str(profile),
            *engine_args(engine)]  # fmt: skip
    agent = AgentProcess(free_port(), args)
    await agent.start()
    return agent


def _live_sessions(server: RecordingServer) -> list[RecordedSession]:
    return [s for s in server.sessions if any(e["type"] == "session.start" for e in s.received)]


def _agent_audio(peer: RtpPeer, since: float = 0.0) -> list[float]:
    """Arrival times of the RTP packets that carried agent audio."""
    return [
        p.arrival for p in peer.packets if p.arrival >= since and rms_dbfs(RtpPeer.decode(p)) > -42
    ]


async def _until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_live_call_passes_mu_law_through_and_delegates_a_transfer(
    engine: str, tmp_path: Path
) -> None:
    backend, _ = scripted_backend("can I speak to a person please")
    async with RecordingServer(backend=backend, live_usage_interval_s=1) as server:
        agent = await _agent(server, _profile(tmp_path), engine)
        peer = await RtpPeer.open()
        try:
            call = asyncio.create_task(
                run_sipp(
                    "uac_transfer.xml",
                    agent.sip_port,
                    keys=peer.sipp_keys("PCMU"),
                    fill={"notify_status": "200 OK"},
                    workdir=tmp_path,
                    extra_args=["-trace_logs"],
                )
            )
            await agent.wait_for("call_answered", 10)
            # The greeting reaches the caller.
            await _until(lambda: len(_agent_audio(peer)) >= 25, 10, "no agent audio")
            peer.talk(talk_then_pause(1.2, 1.0), "PCMU")
            result = await call
            assert result.returncode == 0, result.output[-3000:]

            (live,) = _live_sessions(server)
            for event in live.received:
                validate_client_event(LIVE, event)
            start = live.received[0]
            assert start["type"] == "session.start"
            assert start["session"]["audio"]["format"] == _PCMU
            # Caller audio went to the model as the call's own 20 ms mu-law frames.
            appends = [e for e in live.received if e["type"] == "session.input_audio.append"]
            assert appends and {len(base64.b64decode(e["audio"])) for e in appends} == {160}
            assert rms_dbfs(bytes(live.input_audio)) > -40
            (fmt,) = agent.events("live_audio_format")
            assert fmt["codec"] == "pcmu"

            # The delegation ran the transfer tool, and the REFER went to the destination.
            assert agent.events("live_delegation")
            # The tool's line comes with the transfer's outcome, which may follow SIPp's exit.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not [
                t for t in agent.events("tool_call") if t.get("tool") == "transfer_call"
            ]:
                await asyncio.sleep(0.05)
            (tool,) = [t for t in agent.events("tool_call") if t.get("tool") == "transfer_call"]
            assert tool["origin"] == "delegation"
            refer_to = [
                line.split("refer_to=", 1)[1].strip()
                for log in tmp_path.glob("uac_transfer_*_logs.log")
                for line in log.read_text().splitlines()
                if "refer_to=" in line
            ]
            assert refer_to == [_SALES]
            (finished,) = await agent.wait_for("call_finished", 5)
            assert finished["ended_by"] == "transfer"
            assert finished["usage"]["seconds"] > 0  # the server's usage, kept for the call
        finally:
            peer.close()
            assert await agent.stop() == 0


class LongReply:
    """A 6 s reply: long enough to talk over, sent ahead of real time by the server's lead."""

    def reply(self, request: ReplyRequest) -> Reply:
        return Reply("A long reply.", iter([tone(6000, dbfs=-13).astype("<i2").tobytes()]))


@pytest.mark.exclusive  # silence within 40 ms of the server's signal
async def test_a_live_barge_in_stops_the_agent_within_40_ms_of_the_servers_signal(
    engine: str, tmp_path: Path
) -> None:
    backend = Backend("long", LongReply, transcriber=HeardTranscriber("wait a moment"))
    # The server sends up to 2 s ahead: what the agent still holds then must be dropped.
    async with RecordingServer(backend=backend, live_lead_ms=2000) as server:
        agent = await _agent(server, _profile(tmp_path), engine)
        peer = await RtpPeer.open()
        try:
            call = peer_call(peer, agent, tmp_path, "PCMU", 6000)
            await _until(lambda: len(_agent_audio(peer)) >= 25, 10, "no agent audio")
            barged_at = time.monotonic()
            peer.talk(talk_then_pause(1.0, 0.5), "PCMU")
            (live,) = _live_sessions(server)

            def signal() -> list[float]:
                return [
                    at
                    for at, event in live.sent_log()
                    if event["type"] == "session.input_transcript.delta" and at > barged_at
                ]

            await _until(lambda: bool(signal()), 10, "the caller was never transcribed")
            await asyncio.sleep(0.5)
            heard_at = signal()[0]
            # The agent was still talking when the signal came (the lead held seconds of it)...
            assert _agent_audio(peer, heard_at - 0.3)[0] < heard_at
            # ...and none of it reached the caller 40 ms after the signal.
            late = [at for at in _agent_audio(peer, heard_at + 0.040) if at < heard_at + 0.4]
            assert late == [], [round((at - heard_at) * 1000) for at in late]
            (barge_in,) = agent.events("barge_in")
            assert barge_in["audio_end_ms"] < 6000
            result = await call
            assert result.returncode == 0, result.output[-3000:]
        finally:
            peer.close()
            assert await agent.stop() == 0


@pytest.mark.above_sip
async def test_a_live_session_is_replaced_before_it_expires_with_the_turns_as_input(
    engine: str, tmp_path: Path
) -> None:
    backend, _ = scripted_backend("what are your opening hours")
    async with RecordingServer(backend=backend, live_max_session_s=10) as server:
        agent = await _agent(server, _profile(tmp_path), engine)
        peer = await RtpPeer.open()
        try:
            call = peer_call(peer, agent, tmp_path, "PCMU", 14000)
            await agent.wait_for("call_answered", 10)
            await _until(lambda: len(_agent_audio(peer)) >= 25, 10, "no agent audio")
            # The greeting is heard to the end, then the caller asks (and then waits).
            await _until(lambda: not _agent_audio(peer, time.monotonic() - 0.3), 10, "no pause")
            peer.talk(talk_then_pause(1.0, 30.0), "PCMU")
            (replaced,) = await agent.wait_for("realtime_session_replaced", 15)
            assert replaced["carried_turns"] >= 2
            first, second = _live_sessions(server)
            start = second.received[0]
            validate_client_event(LIVE, start)
            carried = [(m["role"], m["content"][0]["text"]) for m in start["session"]["input"]]
            assert ("user", "what are your opening hours") in carried
            assert carried[0][0] == "assistant"  # the greeting came first
            await asyncio.wait_for(first.closed.wait(), 5)
            # The call goes on in the new session: the caller's audio reaches it.
            peer.talk(talk_then_pause(1.0, 0.2), "PCMU")
            await _until(lambda: rms_dbfs(bytes(second.input_audio)) > -40, 5, "no caller audio")
            result = await call
            assert result.returncode == 0, result.output[-3000:]
            assert not agent.events("realtime_session_lost")
        finally:
            peer.close()
            assert await agent.stop() == 0
