"""End to end: SIPp calls `voice-agent serve` over real SIP/RTP on 127.0.0.1.

The realtime side is the project's local server, run in this test process so the test can see
exactly what the agent sent it; the agent runs as its own process, as in production.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from agent.audio.levels import rms_dbfs
from agent.realtime.dialect import Dialect
from testbed.http_probe import sample, scrape
from testbed.oracle import validate_client_event, validate_server_event
from testbed.peers import (
    CODEC_PT,
    CODEC_RATE,
    DEFAULT_SIP_ENGINE,
    AgentProcess,
    RtpPeer,
    SippResult,
    engine_args,
    expect_503,
    free_port,
    run_sipp,
    talk_then_pause,
    write_g711_stream,
)
from testbed.recording import RecordedSession, RecordingServer

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(120)]


async def _agent(engine: str, server_url: str, *extra: str) -> AgentProcess:
    agent = AgentProcess(free_port(), ["--realtime-url", server_url, *engine_args(engine), *extra])
    await agent.start()
    return agent


def _sipp_caller(stream: Path, codec: str, call_ms: int) -> dict[str, dict[str, str] | Path]:
    """run_sipp arguments for uac_audio.xml: SIPp itself streams ``stream`` as RTP."""
    pt = str(CODEC_PT[codec])
    return {
        "keys": {"codec_pt": pt, "codec_name": codec},
        "fill": {"stream_file": str(stream), "codec_pt": pt, "call_ms": str(call_ms)},
        "workdir": stream.parent,
    }


def _peer_caller(
    peer: RtpPeer, codec: str, call_ms: int, workdir: Path
) -> dict[str, dict[str, str] | Path]:
    """run_sipp arguments for uac_peer.xml: SIPp signals, ``peer`` carries the RTP."""
    return {
        "keys": peer.sipp_keys(codec),
        "fill": {"call_ms": str(call_ms)},
        "workdir": workdir,
    }


@pytest.mark.parametrize(
    ("codec", "dialect", "passthrough"),
    [
        ("PCMU", Dialect.GA, False),
        ("PCMA", Dialect.GA, False),
        # The beta dialect is above the SIP edge: once, on the default engine.
        pytest.param("PCMU", Dialect.BETA, False, marks=pytest.mark.above_sip),
        ("PCMA", Dialect.GA, True),
        pytest.param("PCMU", Dialect.BETA, True, marks=pytest.mark.above_sip),
    ],
    ids=["pcmu-ga", "pcma-ga", "pcmu-beta", "pcma-ga-passthrough", "pcmu-beta-passthrough"],
)
async def test_call_bridges_audio_both_ways(
    engine: str,
    codec: str,
    dialect: Dialect,
    passthrough: bool,
    local_server: RecordingServer,
    tmp_path: Path,
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f"[audio]\ng711_passthrough = {str(passthrough).lower()}\n")
    agent = await _agent(
        engine, local_server.url_for(dialect), "--dialect", dialect.value, "--config", str(config)
    )
    peer = await RtpPeer.open()
    try:
        peer.talk(talk_then_pause(), codec)
        result = await run_sipp(
            "uac_peer.xml", agent.sip_port, **_peer_caller(peer, codec, 4500, tmp_path)
        )
        assert result.returncode == 0, result.output[-3000:]

        # The caller's speech reached the realtime session (24 kHz PCM16, or the call's own
        # G.711 at 8 kHz with passthrough), not silence.
        assert len(local_server.sessions) == 1
        session = local_server.sessions[0]
        assert session.dialect is dialect
        rate = 8000 if passthrough else 24000
        assert session.input_rate == rate
        seconds_in = len(session.input_audio) / 2 / rate
        assert seconds_in > 3.0, f"only {seconds_in:.2f} s of caller audio reached the model"
        assert rms_dbfs(bytes(session.input_audio)) > -32
        for event in session.received:
            validate_client_event(dialect, event)
        for event in session.sent:
            validate_server_event(dialect, event)
        kinds = [event["type"] for event in session.received]
        assert kinds[0] == "session.update"
        assert "input_audio_buffer.append" in kinds
        # The server's VAD heard a caller turn in it.
        sent = [event["type"] for event in session.sent]
        assert "input_audio_buffer.speech_started" in sent
        assert "input_audio_buffer.committed" in sent

        # The model's audio reached the caller as RTP in the negotiated codec, not silence.
        payload_types = {packet.payload_type for packet in peer.packets}
        assert payload_types == {CODEC_PT[codec]}
        heard = peer.audio()
        assert len(heard) / 2 / 8000 > 3.0
        assert rms_dbfs(heard) > -37, "agent audio at the caller is silent"

        # BYE from the caller ended the realtime session.
        await asyncio.wait_for(session.closed.wait(), 5)
        await agent.wait_for("call_finished", 5)
    finally:
        peer.close()
        assert await agent.stop() == 0


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
async def test_sipp_rtp_stream_reaches_the_model(
    engine: str, codec: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(engine, local_server.url)
    try:
        stream = write_g711_stream(tmp_path / f"caller.{codec}", codec)
        result = await run_sipp(
            "uac_audio.xml", agent.sip_port, **_sipp_caller(stream, codec, 3000)
        )
        assert result.returncode == 0, result.output[-3000:]
        session = local_server.sessions[0]
        assert len(session.input_audio) / 2 / 24000 > 2.0
        assert rms_dbfs(bytes(session.input_audio)) > -32
        await asyncio.wait_for(session.closed.wait(), 5)
    finally:
        assert await agent.stop() == 0


async def _one_call_up(
    engine: str, server: RecordingServer, tmp_path: Path, config_text: str, call_ms: int
) -> tuple[AgentProcess, Path, asyncio.Task[SippResult]]:
    """An agent with the profile ``config_text``, answering one call (SIPp streams PCMU
    for ``call_ms``); the caller's stream file, and SIPp's task."""
    config = tmp_path / "agent.toml"
    config.write_text(config_text)
    agent = await _agent(engine, server.url, "--config", str(config))
    stream = write_g711_stream(tmp_path / "caller.PCMU", "PCMU")
    first = asyncio.create_task(
        run_sipp("uac_audio.xml", agent.sip_port, **_sipp_caller(stream, "PCMU", call_ms))
    )
    try:
        await agent.wait_for("call_answered", 10)
    except BaseException:
        first.cancel()
        await agent.stop()
        raise
    return agent, stream, first


async def test_calls_beyond_capacity_get_503_with_retry_after(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent, _, first = await _one_call_up(
        engine, local_server, tmp_path, "[sip]\nmax_calls = 1\nretry_after_s = 7\n", 4000
    )
    try:
        await expect_503(agent.sip_port, "7", tmp_path)
        assert (await first).returncode == 0
        rejected = agent.events("call_rejected")
        assert len(rejected) == 1 and rejected[0]["reason"] == "at capacity"
        assert rejected[0]["code"] == 503 and rejected[0]["sip_call_id"]
    finally:
        assert await agent.stop() == 0


async def _flood(session: RecordedSession, text: str, seconds: float) -> None:
    """Send the same server event for ``seconds``, as fast as the agent reads them."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await session.connection.send(text)


async def test_calls_while_the_loop_is_overloaded_get_503_and_are_taken_once_it_recovers(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    # A low limit: on a machine shared with other tests, a busy loop may get only part of a
    # core, and busy counts the CPU time it got.
    agent, stream, first = await _one_call_up(
        engine, local_server, tmp_path, "[sip]\nmax_loop_busy = 0.4\nretry_after_s = 7\n", 6000
    )
    try:
        session = local_server.sessions[0]
        deadline = time.monotonic() + 5
        while not (deltas := [e for e in session.sent if e["type"].endswith("audio.delta")]):
            assert time.monotonic() < deadline, "the greeting never streamed"
            await asyncio.sleep(0.05)
        assert session.dialect is not None
        validate_server_event(session.dialect, deltas[0])
        # A reply streamed far ahead of real time, over and over: the agent's loop decodes
        # and resamples it all, as fast as it can, for three seconds.
        flood = asyncio.create_task(_flood(session, json.dumps(deltas[0]), 3.0))
        overloaded = (await agent.wait_for("loop_overloaded", 3))[0]
        assert overloaded["busy"] >= 0.4
        await expect_503(agent.sip_port, "7", tmp_path)
        rejected = (await agent.wait_for("call_rejected", 5))[0]
        assert (rejected["reason"], rejected["code"]) == ("the event loop is overloaded", 503)
        metrics = await scrape(agent.http_url)
        assert sample(metrics, "voice_agent_rejected_calls_total", reason="overloaded") == 1
        await flood
        await agent.wait_for("loop_recovered", 5)
        # The next caller is taken, and the call in progress was never cut.
        again = await run_sipp(
            "uac_audio.xml", agent.sip_port, **_sipp_caller(stream, "PCMU", 1000)
        )
        assert again.returncode == 0, again.output[-3000:]
        assert (await first).returncode == 0
        assert len(agent.events("call_answered")) == 2
        assert len(agent.events("loop_overloaded")) == 1  # logged once, not per refusal
    finally:
        assert await agent.stop() == 0


async def test_sigterm_drains_active_calls_and_refuses_new_ones(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(engine, local_server.url)
    stream = write_g711_stream(tmp_path / "caller.PCMU", "PCMU")
    active = asyncio.create_task(
        run_sipp("uac_audio.xml", agent.sip_port, **_sipp_caller(stream, "PCMU", 3000))
    )
    answered = (await agent.wait_for("call_answered", 10))[0]
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGTERM)
    await agent.wait_for("agent_draining", 5)
    await expect_503(agent.sip_port, "30", tmp_path)
    # The agent's log line may reach us a moment after SIPp, which got the 503, exited.
    assert (await agent.wait_for("call_rejected", 5))[0]["reason"] == "draining"
    # The call in progress was not cut: it ran to the caller's BYE.
    assert (await active).returncode == 0
    # With no call left, the agent exits by itself, cleanly.
    assert await asyncio.wait_for(agent.proc.wait(), 10) == 0
    assert await agent.stop() == 0
    ended = [e for e in agent.events("sip_call_ended") if e["call_id"] == answered["call_id"]]
    assert [e["code"] for e in ended] == [200]


async def test_unreachable_realtime_backend_gets_503(engine: str, tmp_path: Path) -> None:
    dead_url = f"ws://127.0.0.1:{free_port(1)}/v1/realtime"
    agent = await _agent(engine, dead_url)
    try:
        await expect_503(agent.sip_port, "30", tmp_path)
        failure = await agent.wait_for("realtime_connect_failed", 5)
        assert "cannot connect" in failure[0]["error"]
    finally:
        assert await agent.stop() == 0


async def test_rejected_key_gets_503_and_never_reaches_the_logs(
    engine: str, tmp_path: Path
) -> None:
    key = "sk-test-secret-0123456789abcdef"

    async def unauthorized(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(unauthorized, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    agent = AgentProcess(
        free_port(),
        ["--realtime-url", f"ws://127.0.0.1:{port}/v1/realtime", *engine_args(engine)],
        env={"REALTIME_API_KEY": key},
    )
    await agent.start()
    try:
        await expect_503(agent.sip_port, "30", tmp_path)
        failure = (await agent.wait_for("realtime_connect_failed", 5))[0]
        assert "HTTP 401" in failure["error"]
        assert failure["call_id"] and failure["sip_call_id"]
    finally:
        server.close()
        assert await agent.stop() == 0
    assert key not in "\n".join(agent.raw)


async def test_cancel_while_ringing_ends_cleanly(engine: str) -> None:
    # A realtime server that accepts TCP but never completes the WebSocket handshake keeps
    # the call ringing, so the caller's CANCEL arrives before any answer.
    hung: list[asyncio.StreamWriter] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)

    stall = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = stall.sockets[0].getsockname()[1]
    agent = await _agent(engine, f"ws://127.0.0.1:{port}/v1/realtime")
    try:
        result = await run_sipp("uac_cancel.xml", agent.sip_port)
        assert result.returncode == 0, result.output[-3000:]
        ended = await agent.wait_for("sip_call_ended", 5)
        assert ended[0]["code"] == 487
        await agent.wait_for("call_finished", 10)
    finally:
        for writer in hung:
            writer.close()
        stall.close()
        assert await agent.stop() == 0


def _thread_names(pid: int) -> list[str]:
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            names.append(Path(f"/proc/{pid}/task/{task}/comm").read_text().strip())
    return names


def _process_resources(pid: int) -> tuple[int, int]:
    threads = len(os.listdir(f"/proc/{pid}/task"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return threads, fds


async def test_sequential_calls_leak_nothing(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(engine, local_server.url)
    try:
        stream = write_g711_stream(tmp_path / "caller.PCMU", "PCMU")
        caller = _sipp_caller(stream, "PCMU", 700)
        warmup = await run_sipp("uac_audio.xml", agent.sip_port, calls=2, **caller)
        assert warmup.returncode == 0, warmup.output[-3000:]
        await agent.wait_for("call_finished", 5, count=2)
        assert agent.proc is not None
        before = _process_resources(agent.proc.pid)

        # 20 on the default engine (the baresip issue's figure); a leak per call shows in 8
        # as well on the other, which keeps the suite in its time.
        calls = 20 if engine == DEFAULT_SIP_ENGINE else 8
        result = await run_sipp("uac_audio.xml", agent.sip_port, calls=calls, rate=5, **caller)
        assert result.returncode == 0, result.output[-3000:]
        await agent.wait_for("call_finished", 10, count=calls + 2)
        await asyncio.sleep(0.5)
        after = _process_resources(agent.proc.pid)
        assert after == before, f"threads/fds before {before}, after {calls} calls {after}"
        assert len(local_server.sessions) == calls + 2
        await asyncio.wait_for(asyncio.gather(*(s.closed.wait() for s in local_server.sessions)), 5)
    finally:
        assert await agent.stop() == 0


@pytest.mark.above_sip
@pytest.mark.parametrize("reconnects", [0, 1])
async def test_dropped_realtime_session_is_told_then_restored_or_ended(
    engine: str, reconnects: int, local_server: RecordingServer, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[realtime]\nreconnect_attempts = {reconnects}\n[agent]\ngreeting = ""\n')
    agent = await _agent(engine, local_server.url, "--config", str(config))
    peer = await RtpPeer.open()
    scenario = "uac_peer_wait_bye.xml" if reconnects == 0 else "uac_peer.xml"
    try:
        call = asyncio.create_task(
            run_sipp(scenario, agent.sip_port, **_peer_caller(peer, "PCMU", 3000, tmp_path))
        )
        await agent.wait_for("call_answered", 10)
        await asyncio.sleep(0.5)
        quiet_until = time.monotonic()
        await local_server.sessions[0].drop()
        await agent.wait_for("realtime_session_lost", 5)
        result = await call
        assert result.returncode == 0, result.output[-3000:]
        # The caller heard the notice beeps (nothing else was playing: no greeting).
        beeps = [p for p in peer.packets if p.arrival > quiet_until]
        assert rms_dbfs(b"".join(RtpPeer.decode(p) for p in beeps)) > -37
        if reconnects:
            # A second session was opened and told to apologise; the caller hung up later.
            await agent.wait_for("realtime_session_restored", 5)
            assert len(local_server.sessions) == 2
            kinds = [e["type"] for e in local_server.sessions[1].received]
            assert kinds[:2] == ["session.update", "response.create"]
        else:
            # The agent hung up on its own after the notice: uac_peer_wait_bye.xml succeeds
            # only when it receives our BYE.
            assert len(local_server.sessions) == 1
            beeps_end = max(p.arrival for p in beeps if rms_dbfs(RtpPeer.decode(p)) > -37)
            assert beeps_end - quiet_until < 2.0
        await agent.wait_for("call_finished", 5)
    finally:
        peer.close()
        assert await agent.stop() == 0


async def test_all_four_call_slots_carry_calls_and_the_fifth_invite_gets_503(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(engine, local_server.url)
    try:
        stream = write_g711_stream(tmp_path / "caller.PCMU", "PCMU")
        four = asyncio.create_task(
            run_sipp(
                "uac_audio.xml", agent.sip_port, calls=4, concurrent=4, rate=20,
                **_sipp_caller(stream, "PCMU", 4000),
            )
        )  # fmt: skip
        await agent.wait_for("call_answered", 10, count=4)
        await expect_503(agent.sip_port, "30", tmp_path)
        result = await four
        assert result.returncode == 0, result.output[-3000:]
        assert len(local_server.sessions) == 4
        for session in local_server.sessions:
            assert rms_dbfs(bytes(session.input_audio)) > -32
    finally:
        assert await agent.stop() == 0


async def test_a_reply_cut_by_the_hang_up_is_recorded_as_cut_before_the_end(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(engine, local_server.url)
    peer = await RtpPeer.open()
    try:
        # The caller stays silent and hangs up 0.8 s into the agent's 1.5-3 s greeting.
        result = await run_sipp(
            "uac_peer.xml", agent.sip_port, **_peer_caller(peer, "PCMU", 800, tmp_path)
        )
        assert result.returncode == 0, result.output[-3000:]
        await agent.wait_for("call_finished", 10)
    finally:
        peer.close()
        assert await agent.stop() == 0
    (lines,) = agent.transcripts()
    kinds = [line.get("kind", line["role"]) for line in lines]
    assert kinds == ["call_start", "agent", "call_end"], kinds
    start, reply, end = lines
    assert start["sip_call_id"] and start["sip_call_id"] == end["sip_call_id"]
    assert reply["interrupted"] is True and reply["cut_by"] == "hang-up"
    assert 300 < reply["heard_ms"] < 1500
    said = "You said something. I am the local test agent."
    assert reply["text"] and said.startswith(reply["text"]) and reply["text"] != said
    assert (end["ended_by"], end["reason"]) == ("caller", "the caller hung up")
    assert end["sip_code"] == 200
    # A caller who never spoke interrupted nothing.
    assert agent.events("barge_in") == []
    assert agent.events("call_finished")[0]["interruptions"] == 0


def _band_share(pcm: bytes, rate: int, low_hz: float, high_hz: float) -> float:
    """The share of ``pcm``'s energy between ``low_hz`` and ``high_hz``."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    power = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    return float(power[band].sum() / max(power.sum(), 1e-9))


@pytest.mark.parametrize("wideband", [True, False], ids=["g722-first", "g711-only"])
async def test_g722_is_preferred_when_offered_and_stays_wideband_to_the_model(
    engine: str, wideband: bool, local_server: RecordingServer, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    codecs = '["G722", "PCMU", "PCMA"]' if wideband else '["PCMA", "PCMU"]'
    config.write_text(f"[sip]\ncodecs = {codecs}\n")
    agent = await _agent(engine, local_server.url, "--config", str(config))
    peer = await RtpPeer.open()
    codec = "G722" if wideband else "PCMA"
    rate = CODEC_RATE[codec]
    try:
        # Silence while the greeting plays, then speech with a 3.4 kHz and a 6 kHz tone under
        # it (G.711 cannot carry the second).
        t = np.arange(int(2.5 * rate)) / rate
        tones = 2500 * (np.sin(2 * np.pi * 3400 * t) + np.sin(2 * np.pi * 6000 * t))
        speech = np.frombuffer(talk_then_pause(1.5, 1.0, rate), np.int16)
        if wideband:
            speech = np.clip(speech + tones, -32768, 32767)
        pcm = np.concatenate([np.zeros(int(1.2 * rate)), speech]).astype("<i2").tobytes()
        peer.talk(pcm, codec)
        result = await run_sipp(
            "uac_peer_codecs.xml", agent.sip_port, keys={"sink_port": str(peer.port)},
            fill={"call_ms": "4500"}, workdir=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.output[-3000:]
        # The offer listed PCMU first and G.722 last: the agent's own order decided.
        active = await agent.wait_for("sip_media_active", 5)
        assert active[0]["codec"] == codec
        assert {packet.payload_type for packet in peer.packets} == {CODEC_PT[codec]}
        session = local_server.sessions[0]
        assert session.input_rate == 24000
        heard = bytes(session.input_audio)
        assert len(heard) / 2 / 24000 > 2.5
        assert rms_dbfs(heard) > -32
        if wideband:
            # 16 kHz all the way to the model's 24 kHz: the 6 kHz tone arrived.
            assert _band_share(heard, 24000, 5800, 6200) > 0.05
            reply = peer.wideband_audio()
            assert len(reply) / 2 / 16000 > 2.5
        else:
            assert _band_share(heard, 24000, 5800, 6200) < 0.001
            reply = peer.audio()
        # The greeting, heard while the caller was silent.
        greeting = reply[: len(reply) // 4]
        assert rms_dbfs(greeting) > -37, "agent audio at the caller is silent"
        stats = (await agent.wait_for("media_stats", 5))[0]
        assert stats["frames_in"] > 100 and stats["rx_packets"] > 100
        assert stats["rx_lost"] == 0
    finally:
        peer.close()
        assert await agent.stop() == 0


def _audible_frames(pcm: bytes, rate: int, floor_dbfs: float = -40.0) -> int:
    """How many 20 ms frames of ``pcm`` are louder than ``floor_dbfs``."""
    step = rate // 50 * 2
    return sum(rms_dbfs(pcm[i : i + step]) > floor_dbfs for i in range(0, len(pcm) - step, step))


def _reply_audio(session: RecordedSession) -> bytes:
    """Every audio delta the server sent, as PCM16 at 24 kHz."""
    return b"".join(
        base64.b64decode(event["delta"])
        for event in session.sent
        if event["type"] in ("response.output_audio.delta", "response.audio.delta")
    )


async def test_far_end_hold_pauses_the_model_input_and_the_playout_and_loses_nothing(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(engine, local_server.url)
    peer = await RtpPeer.open()
    try:
        # The caller only breathes (silence, so no barge-in): it goes on sending while it
        # holds the call, as music on hold would.
        peer.talk(bytes(16000), "PCMU")
        sipp = asyncio.create_task(
            run_sipp(
                "uac_peer_hold.xml", agent.sip_port, keys=peer.sipp_keys("PCMU"),
                fill={"talk_ms": "500", "hold_ms": "2000", "call_ms": "4000"},
                workdir=tmp_path,
            )
        )  # fmt: skip
        await agent.wait_for("sip_remote_hold", 10)
        held_at = time.monotonic()
        await asyncio.sleep(0.3)
        session = local_server.sessions[0]
        input_at_hold = len(session.input_audio)
        await agent.wait_for("sip_remote_resume", 10)
        resumed_at = time.monotonic()
        input_during_hold = len(session.input_audio) - input_at_hold
        result = await sipp
        assert result.returncode == 0, result.output[-3000:]

        # The model heard nothing of the held call (a frame or two in flight at most)...
        assert input_during_hold / 2 / session.input_rate <= 0.1
        # ... and the caller again once it resumed.
        assert len(session.input_audio) / 2 / session.input_rate > 3.0
        # No agent audio reached the caller while it held the call (but for the 40 ms an
        # engine writes ahead of its transmit thread, and a frame in flight)...
        during = b"".join(
            peer.decode(p) for p in peer.packets if held_at + 0.2 < p.arrival < resumed_at
        )
        assert _audible_frames(during, 8000) <= 3
        # ... and the greeting, paused mid-way, was heard in full after the resume.
        reply = _reply_audio(session)
        sent_frames = _audible_frames(reply, 24000)
        assert sent_frames > 40
        heard_frames = _audible_frames(peer.audio(), 8000)
        assert abs(heard_frames - sent_frames) <= 0.15 * sent_frames, (heard_frames, sent_frames)
        records = sorted(agent.records_dir.glob("*.jsonl"))
        kinds = [json.loads(line).get("kind") for line in records[0].read_text().splitlines()]
        assert kinds.index("hold") < kinds.index("resume")
    finally:
        peer.close()
        assert await agent.stop() == 0


async def test_ten_concurrent_calls_in_one_baresip_process_carry_audio_both_ways(
    local_server: RecordingServer, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[sip]\nengine = "baresip"\nmax_calls = 12\n')
    agent = await _agent("baresip", local_server.url, "--config", str(config))
    peers = [await RtpPeer.open() for _ in range(10)]
    workdirs = [tmp_path / f"call{i}" for i in range(10)]
    for workdir in workdirs:
        workdir.mkdir()
    try:
        for peer in peers:
            peer.talk(talk_then_pause(1.2, 1.5), "PCMA")
        calls = asyncio.gather(
            *(
                run_sipp("uac_peer.xml", agent.sip_port,
                         **_peer_caller(peer, "PCMA", 5000, workdir))
                for peer, workdir in zip(peers, workdirs, strict=True)
            )
        )  # fmt: skip
        await agent.wait_for("call_answered", 10, count=10)
        assert agent.proc is not None
        # The stack starts a call's audio at the ACK, which may come a little after the answer:
        # the threads are counted once every caller hears the agent.
        deadline = time.monotonic() + 3
        while not all(peer.audio() for peer in peers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        threads = Counter(_thread_names(agent.proc.pid))
        results = await calls
        # No thread per call: the media clock sends every call's RTP from the loop, and
        # received audio is read from call.audio (agent.sip.baresip.source and .player).
        assert (threads["Audio TX"], threads["aumem_src"], threads["aumem_play"]) == (0, 0, 0)
        assert not [
            line
            for line in agent.raw
            if "start_source failed" in line or "start_player failed" in line
        ]
        for result in results:
            assert result.returncode == 0, result.output[-3000:]
        answered = agent.events("call_answered")
        assert len({line["sip_call_id"] for line in answered}) == 10
        # All ten were up at once: the last was answered before the first ended (the agent
        # logs a call's end as its BYE is answered, which may come after that SIPp's exit).
        first_finished = (await agent.wait_for("call_finished", 5))[0]
        assert agent.lines.index(answered[-1]) < agent.lines.index(first_finished)
        assert len(local_server.sessions) == 10
        for session in local_server.sessions:
            assert rms_dbfs(bytes(session.input_audio)) > -32, "caller audio missing"
        for peer in peers:
            assert rms_dbfs(peer.audio()) > -40, "agent audio missing"
        # Each call's figures are logged as it ends, which may come after its SIPp exits.
        sent = [line["tx_packets"] for line in await agent.wait_for("media_stats", 5, count=10)]
        assert len(sent) == 10 and min(sent) > 100, sent  # ~5 s of 20 ms packets each
    finally:
        for peer in peers:
            peer.close()
        assert await agent.stop() == 0
