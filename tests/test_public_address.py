"""End to end: ``sip.public_host`` (an agent behind 1:1 NAT). SIPp calls an agent that says
its public address is 127.0.0.5 (a loopback alias: the whole of 127/8 is this machine): the
200 OK's Contact and its SDP's o= and c= lines name 127.0.0.5, not the address the agent
is bound to, and audio still flows both ways. And with ``sip.stun_server``, the
SDP names the RTP address a local STUN server reports (both engines).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.audio.levels import rms_dbfs
from testbed.peers import AgentProcess, RtpPeer, engine_args, free_port, run_sipp, talk_then_pause
from testbed.recording import RecordingServer
from testbed.stun_server import StunServer

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(90)]

PUBLIC = "127.0.0.5"
#: What the test's STUN server says each RTP socket's public address is.
MAPPED = "127.0.0.6"


def received_200(message_log: str) -> str:
    """The first 200 OK to the INVITE SIPp received, from its ``-trace_msg`` log."""
    for block in message_log.split("----------------------------------------------- "):
        if "message received" in block and "SIP/2.0 200" in block and "INVITE" in block:
            return block[block.index("SIP/2.0 200") :]
    raise AssertionError(f"SIPp received no 200 OK:\n{message_log[-2000:]}")


async def test_the_answer_names_the_public_address_and_audio_flows(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = AgentProcess(
        free_port(),
        [*engine_args(engine), "--realtime-url", local_server.url, "--sip-public-host", PUBLIC],
    )
    await agent.start()
    peer = await RtpPeer.open()
    messages = tmp_path / "messages.log"
    try:
        peer.talk(talk_then_pause(), "PCMU")
        result = await run_sipp(
            "uac_peer.xml", agent.sip_port, keys=peer.sipp_keys("PCMU"),
            fill={"call_ms": "3000"}, workdir=tmp_path,
            extra_args=["-trace_msg", "-message_file", str(messages)],
        )  # fmt: skip
        assert result.returncode == 0, result.output[-3000:]

        answer = received_200(messages.read_text(errors="replace"))
        contact = re.search(r"^Contact:\s*(.+)$", answer, re.M | re.I)
        assert contact is not None, answer
        assert re.search(rf"<sip:[^@>]+@{re.escape(PUBLIC)}:{agent.sip_port}\b", contact[1])
        origin = re.search(r"^o=.* IN IP4 (\S+)", answer, re.M)
        connections = re.findall(r"^c=IN IP4 (\S+)", answer, re.M)
        assert origin is not None and origin[1] == PUBLIC, answer
        assert connections and set(connections) == {PUBLIC}, answer

        # Audio both ways: the caller's speech reached the model, the greeting the caller.
        await agent.wait_for("call_finished", 10)
        assert len(local_server.sessions) == 1
        assert rms_dbfs(bytes(local_server.sessions[0].input_audio)) > -40
        heard = peer.audio()
        assert len(heard) / 2 / 8000 > 2.0
        assert rms_dbfs(heard) > -40, "agent audio at the caller is silent"
    finally:
        peer.close()
        assert await agent.stop() == 0


async def test_stun_gives_the_sdp_its_public_rtp_address(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    async with StunServer(MAPPED) as stun:
        host, port = stun.address
        config = tmp_path / "agent.toml"
        config.write_text(f'[sip]\nstun_server = "{host}:{port}"\n')
        agent = AgentProcess(
            free_port(),
            [*engine_args(engine), "--realtime-url", local_server.url, "--config", str(config)],
        )
        await agent.start()
        peer = await RtpPeer.open()
        messages = tmp_path / "messages.log"
        try:
            peer.talk(talk_then_pause(), "PCMU")
            result = await run_sipp(
                "uac_peer.xml", agent.sip_port, keys=peer.sipp_keys("PCMU"),
                fill={"call_ms": "3000"}, workdir=tmp_path,
                extra_args=["-trace_msg", "-message_file", str(messages)],
            )  # fmt: skip
            assert result.returncode == 0, result.output[-3000:]
            answer = received_200(messages.read_text(errors="replace"))
            media = answer[answer.index("m=audio") :]
            # The media's own c= line: the address the STUN server saw, for its RTP port.
            rtp_port = int(media.split()[1])
            assert re.search(rf"^c=IN IP4 {re.escape(MAPPED)}\s*$", media, re.M), answer
            assert any(source[1] == rtp_port for source in stun.answered), stun.answered

            await agent.wait_for("call_finished", 10)
            assert rms_dbfs(bytes(local_server.sessions[0].input_audio)) > -40
            assert rms_dbfs(peer.audio()) > -40, "agent audio at the caller is silent"
        finally:
            peer.close()
            assert await agent.stop() == 0
