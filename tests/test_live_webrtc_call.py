"""GPT-Live over WebRTC end to end: a real SIP call, the agent on ``--protocol live
--transport webrtc`` creating its session at the local server's ``/v1/live/sessions`` (the
configuration and the SDP offer in one JSON request), audio on Opus tracks and the events on
the ``oai-events`` data channel.

The caller's audio must reach the model's side through the agent's track, the reply must
reach the caller from the server's track, a barge-in must leave no agent audio later than
60 ms after the server's signal (the caller's first transcript, as on WebSocket: GPT-Live has
no playout events; the server's track going quiet is all the agent hears before it) and the
agent's audio must run out with the track's once the server cut it, a delegated tool must
work, and every data-channel event both ways, and the creation request and reply, must
validate against ``openai.types.live``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from openai.types.live.live_create_params import LiveCreateParams
from pydantic import TypeAdapter

from agent.audio.levels import rms_dbfs
from agent.local.backend import Backend
from agent.local.replies import Reply, ReplyRequest
from agent.local.webrtc.tracked_live import TrackedLive
from testbed.oracle import LIVE, validate_client_event, validate_server_event
from testbed.peers import (
    DEFAULT_SIP_ENGINE,
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

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(90)]

_SALES = "sip:sales@127.0.0.1:5999"


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
    assert server.live_calls_url is not None
    args = ["--realtime-url", server.live_url, "--protocol", "live", "--transport", "webrtc",
            "--webrtc-url", server.live_calls_url, "--config", str(profile),
            *engine_args(engine)]  # fmt: skip
    agent = AgentProcess(free_port(), args)
    await agent.start()
    return agent


def _live_session(server: RecordingServer) -> tuple[RecordedSession, TrackedLive]:
    (session,) = [s for s in server.sessions if isinstance(s.protocol, TrackedLive)]
    assert isinstance(session.protocol, TrackedLive)
    return session, session.protocol


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


def _check_channel(session: RecordedSession, tracked: TrackedLive) -> None:
    """Every event both ways is GPT-Live's; audio rode the tracks; the HTTP request, not the
    channel, started the session."""
    for event in session.received:
        validate_client_event(LIVE, event)
    for event in session.sent:
        validate_server_event(LIVE, event)
    received = {e["type"] for e in session.received}
    assert not received & {"session.start", "session.input_audio.append"}, received
    assert "session.output_audio.delta" not in {e["type"] for e in session.sent}
    assert session.sent[0]["type"] == "session.started"
    # The creation request as the agent sent it (its offer is the one the peer answered).
    TypeAdapter(LiveCreateParams).validate_python(
        {"session": tracked.creation, "transport": {"type": "webrtc", "sdp": "v=0"}}, strict=True
    )
    assert isinstance(tracked.creation, dict) and "format" not in tracked.creation["audio"]


class LongReply:
    """A 6 s reply: long enough to talk over, queued on the server's track ahead of time."""

    def reply(self, request: ReplyRequest) -> Reply:
        return Reply("A long reply.", iter([tone(6000, dbfs=-13).astype("<i2").tobytes()]))


@pytest.mark.exclusive  # the truncate within 60 ms of what was heard
async def test_a_live_call_over_webrtc_talks_both_ways_and_a_barge_in_cuts_within_60_ms(
    tmp_path: Path,
) -> None:
    backend = Backend("long", LongReply, transcriber=HeardTranscriber("wait a moment"))
    # The server queues up to 2 s on its track: all of that must be dropped at the barge-in.
    async with RecordingServer(backend=backend, live_lead_ms=2000, webrtc=True) as server:
        agent = await _agent(server, _profile(tmp_path), DEFAULT_SIP_ENGINE)
        peer = await RtpPeer.open()
        try:
            listening = (await agent.wait_for("agent_listening", 5))[0]
            assert listening["transport"] == "webrtc"
            call = peer_call(peer, agent, tmp_path, "PCMU", 6000)
            await agent.wait_for("call_answered", 10)
            session, tracked = _live_session(server)
            # The greeting reaches the caller from the server's track: half a second of it.
            await _until(lambda: len(_agent_audio(peer)) >= 25, 10, "no agent audio")
            peer.talk(talk_then_pause(1.0, 0.5), "PCMU")
            await _until(lambda: bool(tracked.cuts), 10, "the server never cut its track")
            cut_at, dropped = tracked.cuts[0]
            assert dropped > 48000 // 2  # it held more than half a second still to play

            def signal() -> list[float]:
                return [
                    at
                    for at, event in session.sent_log()
                    if event["type"] == "session.input_transcript.delta" and at > cut_at
                ]

            await _until(lambda: bool(signal()), 10, "the caller was never transcribed")
            await asyncio.sleep(0.5)
            heard_at = signal()[0]
            # The agent was talking until the server cut its track...
            assert _agent_audio(peer, cut_at - 0.3)[0] < cut_at
            # ...its audio ran out with the track's (what aiortc's receiver and the line
            # still held: no playout event says so sooner)...
            stopped = [at for at in _agent_audio(peer, cut_at) if at < cut_at + 1.0]
            assert not stopped or stopped[-1] - cut_at <= 0.300, stopped[-1] - cut_at
            # ...and none of it reached the caller 60 ms after the server's signal.
            late = [at for at in _agent_audio(peer, heard_at + 0.060) if at < heard_at + 1.0]
            assert late == [], [round((at - heard_at) * 1000) for at in late]
            # The caller's speech reached the model's side through the agent's track.
            assert rms_dbfs(bytes(tracked.caller_audio)) > -40
            result = await call
            assert result.returncode == 0, result.output[-3000:]
            (finished,) = await agent.wait_for("call_finished", 5)
            assert finished["usage"]["seconds"] >= 0  # the session's final usage was heard
            _check_channel(session, tracked)
        finally:
            peer.close()
            assert await agent.stop() == 0


@pytest.mark.above_sip
async def test_a_live_call_over_webrtc_delegates_a_transfer(engine: str, tmp_path: Path) -> None:
    backend, _ = scripted_backend("can I speak to a person please")
    async with RecordingServer(backend=backend, webrtc=True) as server:
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
            await _until(lambda: len(_agent_audio(peer)) >= 25, 10, "no agent audio")
            peer.talk(talk_then_pause(1.2, 1.0), "PCMU")
            result = await call
            assert result.returncode == 0, result.output[-3000:]
            session, tracked = _live_session(server)
            # The delegation ran the transfer tool, and the REFER went to the destination.
            assert agent.events("live_delegation")
            # The tool's line comes once the transfer's outcome (SIPp's NOTIFY) is in, which
            # races SIPp's own exit: wait for it rather than read the output at once.
            await _until(
                lambda: any(t.get("tool") == "transfer_call" for t in agent.events("tool_call")),
                5,
                "the agent never logged the transfer_call tool",
            )
            (tool,) = [t for t in agent.events("tool_call") if t.get("tool") == "transfer_call"]
            assert tool["origin"] == "delegation"
            refer_to = [
                line.split("refer_to=", 1)[1].strip()
                for log in tmp_path.glob("uac_transfer_*_logs.log")
                for line in log.read_text().splitlines()
                if "refer_to=" in line
            ]
            assert refer_to == [_SALES]
            kinds = [e["type"] for e in session.sent]
            assert "session.delegation.created" in kinds
            (finished,) = await agent.wait_for("call_finished", 5)
            assert finished["ended_by"] == "transfer"
            _check_channel(session, tracked)
        finally:
            peer.close()
            assert await agent.stop() == 0
