"""End to end: a ``sips:`` call. A PJSUA2 caller (its own process: testbed/pjsip_caller.py)
dials ``sips:agent@127.0.0.1:<tls port>`` over TLS, verifying the agent's certificate,
with SRTP mandatory: the agent answers with a ``sips:`` Contact (a caller that dialled
``sips:`` refuses anything less, RFC 5630) and audio flows both ways, encrypted.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.audio.levels import rms_dbfs
from testbed.certs import make_certificates
from testbed.peers import REPO, AgentProcess, engine_args, free_port, speech_like
from testbed.recording import RecordingServer

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(90)]


def _write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(pcm)


async def _pjsip_call(uri: str, ca: Path, workdir: Path, seconds: float) -> tuple[dict, bytes]:
    """Run the PJSUA2 caller; its report and what it heard (PCM16)."""
    play, record = workdir / "caller.wav", workdir / "heard.wav"
    speech = (speech_like(1.5) * 32767).astype("<i2").tobytes()
    _write_wav(play, bytes(8000) + speech)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "testbed.pjsip_caller", uri, "--ca", str(ca),
        "--play", str(play), "--record", str(record), "--seconds", str(seconds),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith("{")]
    assert lines, out.decode(errors="replace")[-3000:]
    heard = b""
    if record.exists() and record.stat().st_size > 44:
        with wave.open(str(record), "rb") as recorded:
            heard = recorded.readframes(recorded.getnframes())
    return json.loads(lines[-1]), heard


async def test_a_sips_call_over_tls_gets_a_sips_contact_and_carries_audio(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path / "certs")
    tls_port = free_port(socket.SOCK_STREAM)
    config = tmp_path / "agent.toml"
    config.write_text(
        # The agent ends the call (max_call_s): its BYE must reach the sips: caller.
        "[agent]\nmax_call_s = 3.0\nmax_call_goodbye_s = 0.0\n\n"
        f'[sip]\nsrtp = "mandatory"\n\n[sip.tls]\nport = {tls_port}\n'
        f'cert_file = "{certs.cert}"\nkey_file = "{certs.key}"\n'
    )
    agent = AgentProcess(
        free_port(),
        [*engine_args(engine), "--realtime-url", local_server.url, "--config", str(config)],
    )
    await agent.start()
    try:
        report, heard = await _pjsip_call(
            f"sips:agent@127.0.0.1:{tls_port}", certs.ca, tmp_path, seconds=8.0
        )
        assert report["confirmed"], report
        assert report["contact"].startswith("<sips:agent@127.0.0.1:"), report
        assert report["ended_by_callee"], report
        await agent.wait_for("call_finished", 10)
        assert len(local_server.sessions) == 1
        assert rms_dbfs(bytes(local_server.sessions[0].input_audio)) > -40
        assert len(heard) / 2 / 8000 > 1.5
        samples = np.frombuffer(heard, dtype="<i2")
        greeting = samples[:8000].tobytes()
        assert rms_dbfs(greeting) > -40, "the greeting never reached the caller"

        # The next call, sip: over the same TLS port, gets a sip: Contact again.
        report, _ = await _pjsip_call(
            f"sip:agent@127.0.0.1:{tls_port};transport=tls", certs.ca, tmp_path, seconds=0.5
        )
        assert report["confirmed"], report
        assert report["contact"].startswith("<sip:agent@127.0.0.1:"), report
    finally:
        assert await agent.stop() == 0
