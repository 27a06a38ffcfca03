"""Abuse: what a stranger on the agent's ports can send, and what must hold through it.

Every SIP engine must pass this module (it is parametrized over them). Real peers only: the
agent as a process, SIPp as the legitimate caller (whose dialog carries in-dialog probes),
raw UDP requests from ``tests/sip_probe.py``, sipvicious's ``svwar``/``svmap`` when
installed (``.ci/run`` installs them), RTP from a second loopback address (127.0.0.2). Each
test asserts what a user would notice: the exact SIP answer, the process alive and exiting
cleanly, the legitimate call still carrying audio, nothing reaching the model or a stranger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from agent.audio.levels import rms_dbfs
from testbed.peers import (
    SIP_ENGINES,
    AgentProcess,
    RtpPeer,
    RtpStranger,
    engine_args,
    free_port,
    run_sipp,
    talk_then_pause,
    write_g711_stream,
)
from testbed.recording import RecordingServer
from testbed.sip_probe import SipProbe, sdp_offer

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(120)]

#: The SIP engines every abuse test runs on.
ENGINES = SIP_ENGINES
STRANGER = "127.0.0.2"


async def _agent(engine: str, url: str, tmp_path: Path, config: str = "") -> AgentProcess:
    path = tmp_path / "agent.toml"
    path.write_text(config)
    agent = AgentProcess(
        free_port(), ["--realtime-url", url, "--config", str(path), *engine_args(engine)]
    )
    await agent.start()
    return agent


def _svwar_found(output: str) -> set[str]:
    """The extensions in svwar's result table."""
    rows = [line.strip("| ").split("|")[0].strip() for line in output.splitlines()]
    cells = [row for line, row in zip(output.splitlines(), rows, strict=True) if line[:1] == "|"]
    return {cell for cell in cells if cell and cell != "Extension"}


def _alive(agent: AgentProcess) -> bool:
    return agent.proc is not None and agent.proc.returncode is None


@pytest.mark.parametrize("engine", ENGINES)
async def test_probes_get_the_right_answers_while_a_call_goes_on(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    # One call slot, taken by a legitimate call: every new INVITE meets a full agent.
    agent = await _agent(
        engine, local_server.url, tmp_path, "[sip]\nmax_calls = 1\nretry_after_s = 17\n"
    )
    peer = await RtpPeer.open()
    probe = await SipProbe.open()
    target = ("127.0.0.1", agent.sip_port)
    try:
        peer.talk(talk_then_pause(1.0, 0.5), "PCMU")
        call = asyncio.create_task(
            run_sipp(
                "uac_peer_probes.xml", agent.sip_port, keys=peer.sipp_keys("PCMU"),
                fill={"call_ms": "9000"}, workdir=tmp_path,
            )
        )  # fmt: skip
        await agent.wait_for("call_answered", 10)
        heard_before = len(peer.packets)

        # 1. INVITEs without SDP at capacity (once a SIGABRT), and a burst with and without.
        lone = probe.send("INVITE", target)
        answer = await probe.final(lone)
        assert answer is not None and answer.code == 503
        assert answer.header("retry-after") == "17"
        burst = [
            probe.send("INVITE", target, body=sdp_offer("127.0.0.1", 40000) if i % 2 else "")
            for i in range(40)
        ]
        codes = [getattr(await probe.final(sent), "code", None) for sent in burst]
        assert codes == [503] * 40, codes
        for sent in (lone, *burst):
            probe.ack(sent, sent.responses[-1], target)

        # 2. What the agent does not do: refused, with an Allow that lists what it does.
        expected = {
            "SUBSCRIBE": 405, "MESSAGE": 405, "REGISTER": 405, "PUBLISH": 405, "REFER": 405,
            "NOTIFY": 481, "PRACK": 481, "BYE": 481, "FOO": 501, "OPTIONS": 503,
        }  # fmt: skip
        sent = {
            method: probe.send(
                method, target, headers=("Event: presence", "Expires: 60",
                                         "Refer-To: <sip:+19005550123@127.0.0.1>")
            )
            for method in expected
        }  # fmt: skip
        got = {m: getattr(await probe.final(s), "code", None) for m, s in sent.items()}
        assert got == expected
        allow = (await probe.final(sent["MESSAGE"])).header("allow")  # type: ignore[union-attr]
        assert "INVITE" in allow and "MESSAGE" not in allow and "SUBSCRIBE" not in allow
        assert "REFER" not in allow
        # 3. Another user part: 404, not an answer for every extension.
        other = probe.send("INVITE", target, user="1000", body=sdp_offer("127.0.0.1", 40002))
        assert getattr(await probe.final(other), "code", None) == 404

        # 4. Garbage at the SIP port: no crash, and no flood of log lines.
        lines_before = len(agent.raw)
        rng = random.Random(7)
        for _ in range(800):
            probe.raw(rng.randbytes(rng.randint(1, 600)), target)
        await asyncio.sleep(1.0)
        assert len(agent.raw) - lines_before < 20, agent.raw[lines_before:][:5]
        log_bytes = sum(len(line) for line in agent.raw[lines_before:])
        assert log_bytes < 8000

        # 5. sipvicious, as a scanner would run it: INVITEs without SDP to a range of
        # extensions and a dictionary; only the agent's own user part may exist.
        if shutil.which("svwar"):
            words = tmp_path / "extensions.txt"
            words.write_text("admin\noperator\nsupport\ntest\nagent\n")
            scan = await asyncio.create_subprocess_exec(
                "svwar", "-m", "INVITE", "-e", "100-140", "-d", str(words),
                "-p", str(agent.sip_port), "-b", STRANGER, "127.0.0.1",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(scan.communicate(), 60)
            assert _svwar_found(out.decode(errors="replace")) <= {"agent"}
        if shutil.which("svmap"):
            scan = await asyncio.create_subprocess_exec(
                "svmap", "127.0.0.1", "-p", str(agent.sip_port), "-b", STRANGER,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(scan.communicate(), 60)
            # It finds a SIP device (OPTIONS are answered) but not what software it runs.
            mapped = out.decode(errors="replace")
            assert f"127.0.0.1:{agent.sip_port}" in mapped and "voice-agent" not in mapped

        # No presence NOTIFY (or any request) was sent to the probe's Contact.
        await asyncio.sleep(1.0)
        assert probe.requests_received == []

        # The legitimate call went on: its in-dialog probes got 415 and 405 (the scenario
        # fails otherwise), and the caller kept hearing the agent all along.
        result = await call
        assert result.returncode == 0, result.output[-3000:]
        during = peer.packets[heard_before:]
        assert len(during) > 200, "agent RTP stopped during the probes"
        assert _alive(agent)
    finally:
        peer.close()
        probe.close()
        assert await agent.stop() == 0


@pytest.mark.parametrize("engine", ENGINES)
async def test_unacknowledged_answers_free_their_slots_and_reach_no_model(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(
        engine, local_server.url, tmp_path,
        '[sip]\nmax_calls = 3\nack_timeout_s = 1.5\n[agent]\ngreeting = "Hello."\n',
    )  # fmt: skip
    probe = await SipProbe.open(STRANGER)
    target = ("127.0.0.1", agent.sip_port)
    try:
        # Three spoofed INVITEs: answered with 200, never acknowledged.
        spoofed = [
            probe.send("INVITE", target, body=sdp_offer(STRANGER, 41000 + 2 * i)) for i in range(3)
        ]
        for sent in spoofed:
            answer = await probe.final(sent, 10)
            assert answer is not None and answer.code == 200
        timeouts = await agent.wait_for("call_ack_timeout", 5, count=3)
        assert len(timeouts) == 3
        # Their slots are free again: a real caller gets through.
        stream = write_g711_stream(tmp_path / "caller.PCMU", "PCMU")
        result = await run_sipp(
            "uac_audio.xml", agent.sip_port,
            keys={"codec_pt": "0", "codec_name": "PCMU"},
            fill={"stream_file": str(stream), "codec_pt": "0", "call_ms": "2000"},
            workdir=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.output[-3000:]
        assert len(local_server.sessions) == 4
        for session in local_server.sessions[:3]:
            kinds = {event["type"] for event in session.received}
            # Nothing of the line reached the (billed) model, and no reply was started.
            assert "input_audio_buffer.append" not in kinds
            assert "response.create" not in kinds
        assert {e["type"] for e in local_server.sessions[3].received} >= {
            "input_audio_buffer.append",
            "response.create",
        }
    finally:
        probe.close()
        assert await agent.stop() == 0


@pytest.mark.parametrize("engine", ENGINES)
async def test_rtp_from_a_stranger_reaches_neither_the_model_nor_gets_the_agent_audio(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(engine, local_server.url, tmp_path)
    peer = await RtpPeer.open()
    stranger = RtpStranger(STRANGER)
    try:
        # The caller talks for a second and then pauses its RTP altogether.
        peer.talk(talk_then_pause(1.0, 0.1), "PCMU")
        call = asyncio.create_task(
            run_sipp(
                "uac_peer.xml", agent.sip_port, keys=peer.sipp_keys("PCMU"),
                fill={"call_ms": "6000"}, workdir=tmp_path,
            )
        )  # fmt: skip
        agent_rtp = await asyncio.wait_for(peer.remote, 10)
        await asyncio.sleep(1.1)
        assert peer._talker is not None
        peer._talker.cancel()
        session = local_server.sessions[0]
        await asyncio.sleep(0.3)
        heard_before = len(session.input_audio)
        # A stranger floods the call's RTP port with loud audio (the caller is silent).
        loud = bytes([0x00, 0x80] * 80)  # full-scale mu-law square wave
        await stranger.flood(agent_rtp, 150, loud, 0.01)
        await asyncio.sleep(0.5)
        stolen = stranger.received()
        assert stolen == 0, f"the stranger received {stolen} packets of the agent's audio"
        heard = bytes(session.input_audio[heard_before:])
        assert len(heard) > 24000, "caller audio stopped reaching the model"
        assert rms_dbfs(heard) < -47, "the stranger's audio reached the model"
        # The caller still hears the agent.
        packets_before = len(peer.packets)
        await asyncio.sleep(0.5)
        assert len(peer.packets) - packets_before > 15
        assert (await call).returncode == 0
        assert _alive(agent)
    finally:
        stranger.close()
        peer.close()
        assert await agent.stop() == 0


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_cancelled_call_gives_its_slot_back_at_once(engine: str, tmp_path: Path) -> None:
    # A realtime server that accepts TCP and never answers the WebSocket handshake.
    hung: list[asyncio.StreamWriter] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)

    stall = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{stall.sockets[0].getsockname()[1]}/v1/realtime"
    agent = await _agent(engine, url, tmp_path, "[sip]\nmax_calls = 1\nsession_timeout_s = 20\n")
    probe = await SipProbe.open()
    try:
        result = await run_sipp("uac_cancel.xml", agent.sip_port)
        assert result.returncode == 0, result.output[-3000:]
        await agent.wait_for("call_finished", 3)
        # The next INVITE is admitted (it rings) instead of meeting a full agent.
        sent = probe.send(
            "INVITE", ("127.0.0.1", agent.sip_port), body=sdp_offer("127.0.0.1", 40004)
        )
        await asyncio.sleep(1.0)
        assert 180 in [r.code for r in sent.responses], [r.first_line for r in sent.responses]
    finally:
        probe.close()
        for writer in hung:
            writer.close()
        stall.close()
        assert await agent.stop() == 0


async def _drain(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


@pytest.mark.parametrize("engine", ENGINES)
async def test_no_secret_reaches_logs_or_records(engine: str, tmp_path: Path) -> None:
    key = "sk-abuse-test-0123456789abcdefghij"

    async def leaky(ws: ServerConnection) -> None:
        # Accepts the session, then drops it quoting the key, as a misbehaving proxy might.
        async for message in ws:
            if json.loads(message)["type"] == "session.update":
                await ws.send(json.dumps({"type": "session.updated", "session": {}}))
                break
        # Keep reading, as a real server does (unread appends would stall the close).
        reader = asyncio.create_task(_drain(ws))
        await asyncio.sleep(1.0)
        await ws.close(1008, f"bad key Bearer {key}")
        await reader

    async with serve(leaky, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        path = tmp_path / "agent.toml"
        path.write_text("[realtime]\nreconnect_attempts = 0\n")
        agent = AgentProcess(
            free_port(),
            ["--realtime-url", f"ws://127.0.0.1:{port}/v1/realtime", "--config", str(path),
             *engine_args(engine)],
            env={"REALTIME_API_KEY": key},
        )  # fmt: skip
        await agent.start()
        try:
            stream = write_g711_stream(tmp_path / "caller.PCMU", "PCMU")
            await run_sipp(
                "uac_audio.xml", agent.sip_port,
                keys={"codec_pt": "0", "codec_name": "PCMU"},
                fill={"stream_file": str(stream), "codec_pt": "0", "call_ms": "3000"},
                workdir=tmp_path,
            )  # fmt: skip
            await agent.wait_for("call_finished", 10)
        finally:
            assert await agent.stop() == 0
    records = [path.read_text() for path in agent.records_dir.glob("*.jsonl")]
    assert records and any("realtime_session_lost" in text for text in records)
    assert all(key not in text for text in records)
    assert key not in "\n".join(agent.raw)


@pytest.mark.parametrize("engine", ENGINES)
async def test_calls_refused_while_the_backend_is_down_write_no_records(
    engine: str, tmp_path: Path
) -> None:
    agent = await _agent(engine, f"ws://127.0.0.1:{free_port(1)}/v1/realtime", tmp_path)
    probe = await SipProbe.open()
    try:
        for i in range(3):
            sent = probe.send(
                "INVITE", ("127.0.0.1", agent.sip_port), body=sdp_offer("127.0.0.1", 40010 + 2 * i)
            )
            answer = await probe.final(sent, 10)
            assert answer is not None and answer.code == 503
            probe.ack(sent, answer, ("127.0.0.1", agent.sip_port))
        await agent.wait_for("call_finished", 5, count=3)
        assert list(agent.records_dir.iterdir()) == []
    finally:
        probe.close()
        assert await agent.stop() == 0


@pytest.mark.parametrize("engine", ENGINES)
async def test_calls_without_media_or_without_rtp_are_ended(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(engine, local_server.url, tmp_path, "[sip]\nrtp_timeout_s = 2.0\n")
    target = ("127.0.0.1", agent.sip_port)
    no_answer, no_rtp = await SipProbe.open(), await SipProbe.open()
    try:
        # Late offer acknowledged without an answer (what svwar's INVITE scan does).
        sent = no_answer.send("INVITE", target)
        answer = await no_answer.final(sent, 10)
        assert answer is not None and answer.code == 200 and "m=audio" in answer.body
        no_answer.ack(sent, answer, target)
        assert await no_answer.request_from_agent("BYE", 5) is not None
        await agent.wait_for("call_without_media", 1)
        # A proper call whose caller then never sends a single RTP packet.
        sent = no_rtp.send("INVITE", target, body=sdp_offer("127.0.0.1", 40020))
        answer = await no_rtp.final(sent, 10)
        assert answer is not None and answer.code == 200
        no_rtp.ack(sent, answer, target)
        assert await no_rtp.request_from_agent("BYE", 6) is not None
        await agent.wait_for("call_media_timeout", 1)
        await agent.wait_for("call_finished", 5, count=2)
    finally:
        no_answer.close()
        no_rtp.close()
        assert await agent.stop() == 0
