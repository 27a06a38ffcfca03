"""End to end: a caller behind NAT (symmetric RTP), on both engines.

The caller's SDP names an address the agent cannot reach and takes for private
(``sip.nat_networks``; here 127.0.0.9, a loopback alias standing in for 192.168.x), while its
RTP comes from its signalling address and another port, as through a NAT. The agent must
send its audio back to where the caller's RTP comes from, and hear the caller; after that
first packet, no other source, not even another port of the caller's address, can take the
call's audio; and the caller's re-INVITEs (hold, resume), whose SDP names the private address
again, do not send the agent's audio back there.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.audio.levels import rms_dbfs
from testbed.peers import (
    HOST,
    AgentProcess,
    RtpPeer,
    RtpStranger,
    engine_args,
    free_port,
    run_sipp,
    talk_then_pause,
)
from testbed.recording import RecordingServer

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(90)]

#: The caller's private address, as its SDP names it.
PRIVATE = "127.0.0.9"


async def test_the_agent_answers_where_the_callers_rtp_comes_from(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[sip]\nnat_networks = ["{PRIVATE}/32"]\n')
    agent = AgentProcess(
        free_port(),
        [*engine_args(engine), "--realtime-url", local_server.url, "--config", str(config)],
    )
    await agent.start()
    # What the agent sends to the SDP's address (the caller's side of the NAT: lost in life).
    private_side = await RtpPeer.open(host=PRIVATE)
    # The caller as the agent meets it: the NAT's address, another port.
    caller = await RtpPeer.open()
    stranger = RtpStranger()  # another port of the caller's own address
    try:
        calling = run_sipp(
            "uac_peer_hold.xml", agent.sip_port, keys=private_side.sipp_keys("PCMU"),
            fill={"talk_ms": "2000", "hold_ms": "1000", "call_ms": "1500"},
            workdir=tmp_path, extra_args=["-mi", PRIVATE],
        )  # fmt: skip
        sipp = asyncio.create_task(calling)
        # The caller starts talking to the agent's RTP address, as phones do on the 200 OK.
        agent_rtp = await asyncio.wait_for(private_side.remote, 10)
        caller.remote.set_result(agent_rtp)
        caller.talk(talk_then_pause(), "PCMU")
        latched = await agent.wait_for("rtp_source_latched", 5)
        assert latched[0]["address"] == f"{HOST}:{caller.port}"
        await asyncio.sleep(0.5)
        before_stranger = len(caller.packets)
        await stranger.flood(agent_rtp, 50, b"\x00" * 160, 0.02)  # full-scale samples

        result = await sipp
        ended = time.monotonic()
        assert result.returncode == 0, result.output[-3000:]
        await agent.wait_for("call_finished", 10)

        # The agent's audio reached the caller, and kept doing so while the stranger sent.
        heard = caller.audio()
        assert len(heard) / 2 / 8000 > 2.0, f"{len(caller.packets)} packets at the caller"
        assert rms_dbfs(heard) > -40, "agent audio at the caller is silent"
        assert len(caller.packets) - before_stranger > 50
        # After the resume too (the last 1.5 s of the call).
        assert caller.packets[-1].arrival > ended - 1.0, "no agent audio after the resume"
        # Once latched, nothing more went to the SDP's address (bar a packet or two sent
        # between a re-INVITE's SDP and the latch's return), nor to the stranger.
        first_heard = caller.packets[0].arrival
        late = [p for p in private_side.packets if p.arrival > first_heard + 0.1]
        assert len(late) <= 4, f"{len(late)} packets still went to the SDP's address"
        assert stranger.received() == 0
        # And the caller's speech reached the model.
        assert len(local_server.sessions) == 1
        assert rms_dbfs(bytes(local_server.sessions[0].input_audio)) > -40
    finally:
        caller.close()
        private_side.close()
        stranger.close()
        assert await agent.stop() == 0
