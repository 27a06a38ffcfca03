"""Far-end hold on a real SIP call: SIPp re-INVITEs with a=sendonly (or a=inactive), then
a=sendrecv, while the agent is talking.

On hold the model gets no caller audio (the local server's appends stop) and the caller gets
no agent RTP; on resume both start again, and the agent's reply goes on where it stopped.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.audio.levels import rms_dbfs
from testbed.oracle import validate_client_event
from testbed.peers import AgentProcess, RtpPeer, free_port, run_sipp
from testbed.recording import RecordedSession, RecordingServer
from testbed.responders import tone_responder

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(60)]

_REPLY_S = 10.0


def _appends(session: RecordedSession) -> int:
    return sum(event["type"] == "input_audio_buffer.append" for event in session.received)


def _agent_audio(peer: RtpPeer) -> int:
    """Packets of the agent's tone the caller received."""
    return sum(rms_dbfs(peer.decode(packet)) > -42 for packet in peer.packets)


@pytest.mark.parametrize("mode", ["sendonly", "inactive"])
async def test_hold_stops_both_directions_and_resume_restores_them(
    mode: str, tmp_path: Path
) -> None:
    async with RecordingServer(responder_factory=tone_responder(_REPLY_S)) as server:
        agent = AgentProcess(free_port(), ["--realtime-url", server.url])
        await agent.start()
        peer = await RtpPeer.open()
        try:
            fill = {"hold_mode": mode, "before_ms": "1500", "hold_ms": "2000", "after_ms": "1500"}
            call = asyncio.create_task(
                run_sipp(
                    "uac_hold.xml",
                    agent.sip_port,
                    keys=peer.sipp_keys("PCMU"),
                    fill=fill,
                    workdir=tmp_path,
                )
            )
            await agent.wait_for("call_held", 10)
            await asyncio.sleep(0.3)  # what was in flight has arrived
            session = server.sessions[0]
            appends, packets, heard = _appends(session), len(peer.packets), _agent_audio(peer)
            assert heard > 40  # the agent was talking when the caller held the call
            await asyncio.sleep(1.2)
            # Held: no caller audio reached the model, and no agent RTP reached the caller.
            assert _appends(session) == appends
            assert len(peer.packets) == packets
            await agent.wait_for("call_resumed", 10)
            resumed = time.monotonic()
            await asyncio.sleep(1.0)
            # Resumed: the caller's audio flows to the model again, the agent talks on.
            assert _appends(session) - appends >= 15
            assert _agent_audio(peer) - heard >= 30
            first = next(p.arrival for p in peer.packets[packets:])
            assert first - resumed < 0.3
            result = await call
            assert result.returncode == 0, result.output[-2000:]
            for event in session.received:
                validate_client_event(session.dialect, event)
            await agent.wait_for("call_finished", 5)
            kinds = [line.get("kind") for line in agent.transcripts()[0]]
            assert kinds.count("hold") == 1 and kinds.count("resume") == 1
            assert [e["event"] for e in agent.lines if e["event"].startswith("sip_remote")] == [
                "sip_remote_hold",
                "sip_remote_resume",
            ]
        finally:
            peer.close()
            assert await agent.stop() == 0
