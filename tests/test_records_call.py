"""Recording and call records on real SIP calls (SIPp signalling, the test's own RTP peer).

The caller talks a known noise signal; the local server's reply is another. The stereo WAV
must hold the first on the left and, on the right, exactly what the caller received: the
reply up to the barge-in's cut, not the whole reply the server streamed. The call record must
agree with the transcript. A SIGKILL mid-call must leave a WAV that plays up to about the
last second.
"""

from __future__ import annotations

import asyncio
import json
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.audio.levels import rms_dbfs, tone
from agent.local.replies import RATE, Reply, ReplyRequest
from testbed.peers import AgentProcess, RtpPeer, free_port, run_sipp
from testbed.recording import RecordingServer

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(90)]

_REPLY_S = 12.0
_CALLER_NOISE = (np.random.default_rng(7).normal(0, 2500, 8000)).clip(-20000, 20000)
CALLER_PCM = _CALLER_NOISE.astype("<i2").tobytes()  # 1 s of noise at 8 kHz, looped
LOUD_DBFS = -42


class NoiseResponder:
    """A long reply of noise (24 kHz), streamed in 100 ms chunks: nothing periodic, so a
    correlation peak says where, not just that."""

    def reply(self, request: ReplyRequest) -> Reply:
        noise = np.random.default_rng(11).normal(0, 5000, int(RATE * _REPLY_S))
        pcm = noise.clip(-30000, 30000).astype("<i2").tobytes()
        chunk = RATE * 2 // 10

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(pcm), chunk):
                yield pcm[start : start + chunk]

        return Reply("This is a long answer that the caller will interrupt.", chunks())


def _profile(tmp_path: Path, name: str = "recorded") -> Path:
    path = tmp_path / f"{name}.toml"
    # No server VAD: the caller talks all along, and the test says when it barged in.
    path.write_text('[records]\nrecording = true\n[agent.turn_detection]\ntype = "none"\n')
    return path


def _read_wav(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 2 and wav.getsampwidth() == 2
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
        return data[0::2], data[1::2], wav.getframerate()


def _loud_frames(pcm: np.ndarray) -> list[bool]:
    frames = pcm[: len(pcm) // 160 * 160].reshape(-1, 160)
    return [rms_dbfs(frame.astype("<i2").tobytes()) > LOUD_DBFS for frame in frames]


def _best_match(segment: np.ndarray, signal: np.ndarray) -> float:
    """The highest normalised correlation of ``segment`` anywhere in ``signal``."""
    segment = segment - segment.mean()
    windows = np.lib.stride_tricks.sliding_window_view(signal, len(segment))
    windows = windows - windows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(windows, axis=1) * np.linalg.norm(segment)
    scores = windows @ segment / np.where(norms == 0, 1, norms)
    return float(scores.max())


async def _until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def _heard_packets(peer: RtpPeer) -> int:
    return sum(rms_dbfs(peer.decode(packet)) > LOUD_DBFS for packet in peer.packets)


@pytest.mark.exclusive  # recording and truncate agree within 40 ms
async def test_a_recorded_call_with_a_barge_in_and_its_call_record(tmp_path: Path) -> None:
    async with RecordingServer(responder_factory=NoiseResponder) as server:
        agent = AgentProcess(
            free_port(), ["--realtime-url", server.url, "--config", str(_profile(tmp_path))]
        )
        await agent.start()
        peer = await RtpPeer.open()
        try:
            peer.talk(CALLER_PCM, "PCMU")
            call = asyncio.create_task(
                run_sipp(
                    "uac_peer.xml",
                    agent.sip_port,
                    keys=peer.sipp_keys("PCMU"),
                    fill={"call_ms": "5000"},
                    workdir=tmp_path,
                )
            )
            # 1.5 s of the greeting's reply reaches the caller, then the caller talks over it.
            await _until(lambda: _heard_packets(peer) >= 75, 10, "no agent audio")
            session = server.sessions[0]
            await session.emit(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": "item_caller_0",
                    "content_index": 0,
                    "transcript": "Hold on, please.",
                    "usage": {"type": "duration", "seconds": 1.0},
                }
            )
            await session.emit(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": 1500,
                    "item_id": "item_caller_1",
                }
            )
            assert (await call).returncode == 0
            await agent.wait_for("call_record_written", 10)
        finally:
            peer.close()
            assert await agent.stop() == 0

    (wav_path,) = agent.records_dir.glob("*.wav")
    (record_path,) = agent.records_dir.glob("*.json")
    (transcript,) = agent.transcripts()
    assert wav_path.stem == record_path.stem
    left, right, rate = _read_wav(wav_path)
    assert rate == 8000
    assert 4.0 <= len(left) / rate <= 7.0

    # Left: what the caller sent (found in the looped noise, through G.711 and the jitter
    # buffer); right: what the caller received, cut where the caller heard it cut.
    sent = np.frombuffer(CALLER_PCM * 2, dtype="<i2").astype(np.float64)
    assert _best_match(left[2 * rate : int(2.5 * rate)], sent) > 0.9
    received = np.frombuffer(peer.audio(), dtype="<i2").astype(np.float64)
    right_loud = _loud_frames(right)
    onset = right_loud.index(True)
    assert _best_match(right[(onset + 25) * 160 : (onset + 50) * 160], received) > 0.9
    heard_ms = 20 * _heard_packets(peer)
    truncate = next(e for e in session.received if e["type"] == "conversation.item.truncate")
    assert abs(20 * sum(right_loud) - heard_ms) <= 40
    assert abs(20 * sum(right_loud) - truncate["audio_end_ms"]) <= 40
    assert not any(right_loud[onset + sum(right_loud) + 2 :])  # silent after the cut
    assert truncate["audio_end_ms"] < _REPLY_S * 1000 - 1000  # it was a real cut

    # The two channels are aligned as on the line: the caller started talking on the first
    # agent packet, before the reply reached it.
    peer_lead_ms = 1000 * (
        next(p.arrival for p in peer.packets if rms_dbfs(peer.decode(p)) > LOUD_DBFS)
        - peer.packets[0].arrival
    )
    left_onset = _loud_frames(left).index(True)
    wav_lead_ms = 20 * (onset - left_onset)
    # The agent hears the caller after its jitter buffer: up to ~120 ms later than sent.
    assert -40 <= peer_lead_ms - wav_lead_ms <= 160, (peer_lead_ms, wav_lead_ms)

    record = json.loads(record_path.read_text())
    end = next(line for line in transcript if line.get("kind") == "call_end")
    assert record["call_id"] == end["call_id"] and record["sip_call_id"] == end["sip_call_id"]
    assert (record["caller"], record["dialed"], record["profile"]) == (
        "caller",
        "agent",
        "recorded",
    )
    assert (record["provider"], record["protocol"]) == ("custom", "realtime")
    assert record["model"]
    times = record["times"]
    assert times["invite"] <= times["answer"] <= times["end"]
    assert all(value.endswith("Z") for key, value in times.items() if key[-3:] != "_ms")
    assert 4000 <= times["talk_ms"] <= 8000
    assert (record["ended_by"], record["reason"]) == (end["ended_by"], end["reason"])
    assert (record["ended_by"], record["sip_code"]) == ("caller", 200)
    agent_lines = [line for line in transcript if line["role"] == "agent"]
    assert record["turns"] == {
        "caller": sum(line["role"] == "caller" for line in transcript),
        "agent": len(agent_lines),
        "agent_interrupted": sum(bool(line.get("interrupted")) for line in agent_lines),
    }
    assert record["turns"]["caller"] == 1 and record["turns"]["agent_interrupted"] == 1
    assert record["barge_ins"] == 1
    assert record["tool_calls"] == [] and record["transfer"] is None
    assert record["latency"]["turns_ms"] == []  # only a greeting: no caller turn answered
    rtp = record["rtp"]
    assert rtp["rx_packets"] >= 200 and rtp["rx_lost"] == 0
    assert 0 <= rtp["rx_jitter_ms_mean"] < 20
    assert record["transcript"].endswith(".jsonl")
    assert record["recording"]["path"] == str(wav_path)
    assert record["recording"]["rate"] == 8000 and record["recording"]["dropped_frames"] == 0
    stats = agent.events("media_stats")[0]
    assert stats["rx_packets"] >= rtp["rx_packets"] - 60


async def test_a_killed_agent_leaves_a_playable_recording(tmp_path: Path) -> None:
    async with RecordingServer(responder_factory=NoiseResponder) as server:
        agent = AgentProcess(
            free_port(), ["--realtime-url", server.url, "--config", str(_profile(tmp_path))]
        )
        await agent.start()
        peer = await RtpPeer.open()
        call = None
        try:
            peer.talk(CALLER_PCM, "PCMU")
            call = asyncio.create_task(
                run_sipp(
                    "uac_peer.xml",
                    agent.sip_port,
                    keys=peer.sipp_keys("PCMU"),
                    fill={"call_ms": "4000"},
                    workdir=tmp_path,
                    timeout_s=8,
                )
            )
            await _until(lambda: len(peer.packets) >= 125, 10, "the call never ran 2.5 s")
            assert agent.proc is not None
            agent.proc.kill()
            await agent.proc.wait()
        finally:
            peer.close()
            if call is not None:
                await call  # SIPp's BYE goes unanswered; its own timeout ends it
            await agent.stop()

    (wav_path,) = agent.records_dir.glob("*.wav")
    assert not list(agent.records_dir.glob("*.json"))  # no end, no record
    left, right, rate = _read_wav(wav_path)  # the header covers what was patched
    assert rate == 8000
    assert len(left) / rate >= 1.0
    sent = np.frombuffer(CALLER_PCM * 2, dtype="<i2").astype(np.float64)
    assert _best_match(left[-rate // 2 :], sent) > 0.9
    assert any(_loud_frames(right))


@pytest.mark.exclusive  # every 20 ms frame of the 600 ms notice heard on time
async def test_the_recording_notice_plays_before_the_greeting(tmp_path: Path) -> None:
    notice = tmp_path / "notice.wav"
    with wave.open(str(notice), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)  # resampled to the call's 8 kHz
        wav.writeframes(tone(600, 600, 16000, -12.0))
    profile = tmp_path / "noticed.toml"
    profile.write_text(
        f'[records]\nrecording = true\nrecording_notice = "{notice}"\n'
        '[agent.turn_detection]\ntype = "none"\n'
    )
    async with RecordingServer(responder_factory=NoiseResponder) as server:
        agent = AgentProcess(free_port(), ["--realtime-url", server.url, "--config", str(profile)])
        await agent.start()
        peer = await RtpPeer.open()
        try:
            peer.talk(CALLER_PCM, "PCMU")
            result = await run_sipp(
                "uac_peer.xml",
                agent.sip_port,
                keys=peer.sipp_keys("PCMU"),
                fill={"call_ms": "2500"},
                workdir=tmp_path,
            )
            assert result.returncode == 0
            await agent.wait_for("call_record_written", 10)
        finally:
            peer.close()
            assert await agent.stop() == 0
    received = np.frombuffer(peer.audio(), dtype="<i2").astype(np.float64)
    loud = _loud_frames(received)
    start = loud.index(True)
    # The notice first, whole (600 ms of the tone), then the greeting's reply (noise).
    notice_part = received[start * 160 : (start + 30) * 160]
    spectrum = np.abs(np.fft.rfft(notice_part))
    assert abs(np.argmax(spectrum) * 8000 / len(notice_part) - 600) < 20
    assert all(loud[start : start + 29])
    kinds = [event["type"] for event in server.sessions[0].received]
    # The model heard nothing of the line until the notice had played and it was asked to
    # greet.
    assert kinds.index("response.create") < kinds.index("input_audio_buffer.append")
    (wav_path,) = agent.records_dir.glob("*.wav")
    _, right, _ = _read_wav(wav_path)
    assert any(_loud_frames(right)[:60])  # the notice is in the recording


@pytest.mark.exclusive  # a turn's latency to within 40 ms
async def test_a_turn_s_latency_reaches_the_call_record(tmp_path: Path) -> None:
    profile = tmp_path / "turns.toml"
    profile.write_text('[agent]\ngreeting = ""\n')
    # The caller talks for 1 s, then waits: the server's VAD ends the turn and replies.
    burst = CALLER_PCM + bytes(4 * 8000 * 2)
    async with RecordingServer(responder_factory=NoiseResponder) as server:
        agent = AgentProcess(free_port(), ["--realtime-url", server.url, "--config", str(profile)])
        await agent.start()
        peer = await RtpPeer.open()
        try:
            peer.talk(burst, "PCMU")
            result = await run_sipp(
                "uac_peer.xml",
                agent.sip_port,
                keys=peer.sipp_keys("PCMU"),
                fill={"call_ms": "3500"},
                workdir=tmp_path,
            )
            assert result.returncode == 0
            await agent.wait_for("call_record_written", 10)
        finally:
            peer.close()
            assert await agent.stop() == 0
    (record_path,) = agent.records_dir.glob("*.json")
    record = json.loads(record_path.read_text())
    sent = [event for event in server.sessions[0].sent if event["type"].endswith("speech_stopped")]
    assert len(sent) == 1
    # What the caller lived: from the end of its burst (it started talking at the first
    # agent packet) to the first reply packet; the agent sees the burst end after its jitter
    # buffer, so its figure may be up to ~100 ms shorter.
    talk_end = peer.packets[0].arrival + 1.0
    reply = next(p.arrival for p in peer.packets if rms_dbfs(peer.decode(p)) > LOUD_DBFS)
    lived_ms = (reply - talk_end) * 1000
    (latency,) = record["latency"]["turns_ms"]
    assert lived_ms - 140 <= latency <= lived_ms + 40, (latency, lived_ms)
