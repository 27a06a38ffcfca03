"""End to end: SDES-SRTP, on both SIP engines. A baresip-python caller in this process dials
the agent with SRTP mandatory on both sides: audio flows both ways, encrypted; a plain-RTP
offer where SRTP is mandatory gets 488 before the stack sees it; and a call comes over TLS,
verifying the agent's certificate. (To ``sip:...;transport=tls``: libre, under the
baresip-python caller, sends no request to a ``sips:`` URI.)
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import baresip
import pytest

from agent.audio.levels import rms_dbfs
from testbed.certs import make_certificates
from testbed.peers import (
    AgentProcess,
    engine_args,
    free_port,
    free_rtp_port,
    run_sipp,
    speech_like,
)
from testbed.recording import RecordingServer

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(90)]

FRAME = 320  # 20 ms of 8 kHz PCM16


async def _srtp_caller(uri: str, quiet_s: float, talk_s: float, ca: Path | None = None) -> bytes:
    """Dial ``uri`` with SRTP mandatory (over TLS too, verifying the agent against ``ca``,
    when ``uri`` says ``transport=tls``): silence for ``quiet_s`` (the greeting plays), speech
    for ``talk_s``; what the caller heard."""
    port, rtp = free_port(), free_rtp_port(4)
    tls = f"sip_cafile {ca}\nsip_verify_server yes\n" if ca is not None else ""
    runtime = baresip.Runtime(native_log_level="warning")
    await runtime.start(
        baresip.Config(
            net_interface="127.0.0.1",
            max_concurrent_calls=None,
            native_log_level="warning",
            rtp_timeout=0,
            extra_config_text=(
                f"sip_listen 127.0.0.1:{port}\nsip_transports udp{',tls' if ca else ''}\n"
                f"rtp_ports {rtp}-{rtp + 3}\n{tls}"
            ),
        )
    )
    heard = bytearray()
    try:
        agent = await baresip.UserAgent.create(
            runtime,
            baresip.Account(
                user="caller", domain=f"127.0.0.1:{port}", password="", reg_interval=0,
                audio_codecs=("pcmu",), extra_params=("mediaenc=srtp-mand", "video_codecs"),
            ),
        )  # fmt: skip
        call = await agent.dial(uri)
        await asyncio.wait_for(call.wait_established(), 10)
        speech = (speech_like(talk_s) * 32767).astype("<i2").tobytes()
        pcm = bytes(int(quiet_s * 8000) * 2) + speech
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index in range(len(pcm) // FRAME):
            call.audio.write(pcm[index * FRAME : (index + 1) * FRAME])
            heard += call.audio.read(8 * FRAME)
            # At absolute deadlines: the caller's clock must not drift.
            await asyncio.sleep(max(0.0, start + (index + 1) * 0.02 - loop.time()))
        await call.hangup()
    finally:
        await runtime.close()
    return bytes(heard)


async def test_an_srtp_call_carries_audio_both_ways_and_a_plain_offer_gets_488(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[sip]\nsrtp = "mandatory"\n')
    agent = AgentProcess(
        free_port(),
        [*engine_args(engine), "--realtime-url", local_server.url, "--config", str(config)],
    )
    await agent.start()
    try:
        heard = await _srtp_caller(f"sip:agent@127.0.0.1:{agent.sip_port}", 2.5, 1.5)
        await agent.wait_for("call_finished", 10)
        assert len(local_server.sessions) == 1
        session = local_server.sessions[0]
        assert rms_dbfs(bytes(session.input_audio)) > -40, "caller audio never reached the model"
        assert len(heard) / 2 / 8000 > 2.0
        assert rms_dbfs(heard[: 2 * 8000 * 2]) > -40, "the greeting never reached the caller"

        result = await run_sipp(
            "uac_expect_code.xml", agent.sip_port, fill={"code": "488"}, workdir=tmp_path,
            extra_args=["-s", "agent"], timeout_s=20,
        )  # fmt: skip
        assert result.returncode == 0, result.output[-2000:]
        assert len(local_server.sessions) == 1
        assert any(line["code"] == 488 for line in agent.events("call_rejected"))
    finally:
        assert await agent.stop() == 0


async def test_an_srtp_call_over_tls(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path / "certs")
    tls_port = free_port(socket.SOCK_STREAM)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[sip]\nsrtp = "mandatory"\n\n[sip.tls]\nport = {tls_port}\n'
        f'cert_file = "{certs.cert}"\nkey_file = "{certs.key}"\n'
    )
    agent = AgentProcess(
        free_port(),
        [*engine_args(engine), "--realtime-url", local_server.url, "--config", str(config)],
    )
    await agent.start()
    try:
        uri = f"sip:agent@127.0.0.1:{tls_port};transport=tls"
        heard = await _srtp_caller(uri, 2.5, 1.5, ca=certs.ca)
        await agent.wait_for("call_finished", 10)
        assert len(local_server.sessions) == 1
        assert rms_dbfs(bytes(local_server.sessions[0].input_audio)) > -40
        assert rms_dbfs(heard[: 2 * 8000 * 2]) > -40
    finally:
        assert await agent.stop() == 0
