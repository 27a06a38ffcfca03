"""The agent's hold around a transfer, in a real SIP call (SIPp as the transferee, an RTP
peer as its media, the local realtime server as the model).

The model calls transfer_call in its greeting. Once the greeting was heard, the caller gets a
re-INVITE with a=sendonly before the REFER, and hears the configured music on hold (told
apart from the agent's 440 Hz voice by its notes, and matched sample by sample to the file);
the model hears nothing of the caller meanwhile. The transfer fails (a NOTIFY 503, or the
REFER refused with 603): the caller gets a re-INVITE with a=sendrecv, the music stops, and
the agent's next reply (the model told of the failure) reaches the caller.
"""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.audio.hold_music import HoldMusic
from agent.realtime.dialect import Dialect
from testbed.peers import RtpPeer, run_sipp
from testbed.recording import RecordedSession, RecordingServer
from tests.test_tools_call import (
    TONE,
    _agent,
    _await_output,
    _check_client_events,
    _model_calls,
    _sent,
    _session,
    _until,
)

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(60)]

_HUMAN = "sip:frontdesk@127.0.0.1:5999"
#: The music's two notes (Hz), 250 ms each: far from the agent's 440 Hz tone.
_NOTES = (800.0, 1200.0)
_RATE = 16000


def _music_file(path: Path) -> Path:
    """A 16 kHz stereo WAV: the notes on the left, the same at half level on the right."""
    t = np.arange(_RATE // 4) / _RATE
    mono = np.concatenate([np.sin(2 * np.pi * f * t) * 8000 for f in _NOTES])
    stereo = np.stack([mono, mono / 2], axis=1).round().astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(_RATE)
        wav.writeframes(stereo.tobytes())
    return path


def _profile(tmp_path: Path, music: Path) -> Path:
    path = tmp_path / "hold.toml"
    path.write_text(
        f"""
[agent]
greeting = "Say hello."

[tools]
builtin = ["transfer_call"]
music_on_hold = "{music}"

[tools.transfer_destinations]
human = "{_HUMAN}"
"""
    )
    return path


def _appends(session: RecordedSession) -> int:
    return sum(event["type"] == "input_audio_buffer.append" for event in session.received)


def _classify(frame: bytes) -> str:
    """A 20 ms frame of what the caller heard: "voice" (the agent's 440 Hz), "music" (one
    of its notes) or "quiet"."""
    samples = np.frombuffer(frame, dtype="<i2").astype(float)
    if len(samples) < 160 or np.sqrt(np.mean(samples**2)) < 300:
        return "quiet"
    spectrum = np.abs(np.fft.rfft(samples[:160] * np.hanning(160), n=800))
    peak = float(np.argmax(spectrum)) * 8000 / 800
    if abs(peak - 440) < 60:
        return "voice"
    if any(abs(peak - note) < 60 for note in _NOTES):
        return "music"
    return "other"


def _runs(kinds: list[str]) -> list[tuple[str, int]]:
    """Consecutive frames of one kind, as (kind, frames); quiet frames left out."""
    runs: list[tuple[str, int]] = []
    for kind in kinds:
        if kind == "quiet":
            continue
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1] + 1)
        else:
            runs.append((kind, 1))
    return [run for run in runs if run[1] >= 3]  # a frame or two mixed at an edge aside


def _best_correlation(heard: bytes, music: bytes) -> float:
    """How well ``heard`` matches the looped ``music`` at its best phase (1.0: exactly)."""
    signal = np.frombuffer(heard, dtype="<i2").astype(float)
    period = np.frombuffer(music, dtype="<i2").astype(float)
    loop = np.tile(period, len(signal) // len(period) + 2)
    best = 0.0
    for lag in range(0, len(period), 2):
        piece = loop[lag : lag + len(signal)]
        best = max(
            best, float(np.dot(signal, piece) / (np.linalg.norm(signal) * np.linalg.norm(piece)))
        )
    return best


@pytest.mark.parametrize(
    ("engine", "scenario", "fill", "failure"),
    [
        (
            "baresip",
            "uac_transfer_fails.xml",
            {"notify_status": "503 Service Unavailable", "notify_after_ms": "1500"},
            "503 Service Unavailable",
        ),
        (
            "pjsip",
            "uac_transfer_refused.xml",
            {"refer_status": "603 Declined", "refuse_after_ms": "1500"},
            "603 Declined",
        ),
    ],
)
async def test_the_caller_hears_music_on_hold_and_is_resumed_when_the_transfer_fails(
    engine: str, scenario: str, fill: dict[str, str], failure: str, tmp_path: Path
) -> None:
    music = _music_file(tmp_path / "music.wav")
    async with RecordingServer(responder_factory=TONE) as server:
        agent = await _agent(server, _profile(tmp_path, music), Dialect.GA, engine)
        peer = await RtpPeer.open()
        try:
            call = asyncio.create_task(
                run_sipp(
                    scenario,
                    agent.sip_port,
                    keys=peer.sipp_keys(),
                    fill={**fill, "call_ms": "2500"},
                    workdir=tmp_path,
                    extra_args=["-trace_logs"],
                )
            )
            session = await _session(server)
            await _model_calls(session, "transfer_call", {"destination": "human"}, "xfer")
            await agent.wait_for("agent_hold", 10)
            await asyncio.sleep(0.5)  # what was on its way to the model has arrived
            appends = _appends(session)
            await asyncio.sleep(0.6)
            # On hold (1.5 s before the transfer fails) the model heard nothing of the caller.
            assert not agent.events("agent_resume")
            assert _appends(session) == appends
            await agent.wait_for("agent_resume", 10)
            await asyncio.sleep(0.5)
            assert _appends(session) - appends >= 8  # resumed: it hears the caller again
            failed = await _await_output(session, "xfer")
            assert f"failed ({failure})" in failed and "still on the line" in failed
            # The model is asked to answer the failure, and its reply reaches the caller.
            await _until(lambda: _sent(session, "response.created")[1:], "the reply")
            result = await call
            assert result.returncode == 0, result.output[-2000:]
            # SIP, in order: hold (a=sendonly), the REFER, resume (a=sendrecv).
            steps = [
                line.split("] ", 1)[-1].strip()
                for log in tmp_path.glob("uac_transfer_*_logs.log")
                for line in log.read_text().splitlines()
                if "reinvite=" in line or "refer_to=" in line
            ]
            assert steps == [
                "reinvite=hold a=sendonly",
                f"refer_to={_HUMAN}",
                "reinvite=resume a=sendrecv",
            ], steps
            # What the caller heard: the greeting, the music, then the agent again.
            frames = [peer.decode(packet) for packet in peer.packets]
            kinds = [_classify(frame) for frame in frames]
            runs = _runs(kinds)
            assert [kind for kind, _ in runs] == ["voice", "music", "voice"], runs
            assert runs[1][1] >= 50, runs  # at least a second of music
            start = kinds.index("music")
            end = len(kinds) - kinds[::-1].index("music")
            heard = b"".join(frames[start + 2 : end - 2])
            expected = HoldMusic(_mono(music), _RATE, "file").at_rate(8000)
            assert _best_correlation(heard, expected) > 0.9
            _check_client_events(session)
            finished = (await agent.wait_for("call_finished", 5))[0]
            assert finished["ended_by"] == "caller"
            record = json.loads(next(agent.records_dir.glob("*.json")).read_text())
            transfer = record["transfer"]
            assert (transfer["destination"], transfer["ok"]) == (_HUMAN, False)
            assert f"{transfer['status']} {transfer['reason']}" == failure
            hold = transfer["hold"]
            assert hold["music"] == str(music)
            assert 1200 <= hold["ms"] <= 5000, hold
            # The model's usage, as the server reported it per response, summed for the call.
            reported = [event["response"]["usage"] for event in _sent(session, "response.done")]
            assert len(reported) >= 2  # the greeting and the reply to the failure
            usage = record["usage"]
            assert finished["usage"] == usage
            for key in ("total_tokens", "input_tokens", "output_tokens"):
                assert usage[key] == sum(one[key] for one in reported), key
            audio = sum(one["output_token_details"]["audio_tokens"] for one in reported)
            assert usage["output_audio_tokens"] == audio
            assert audio >= 2 * 30  # two replies of 1.6 s of audio, 20 tokens a second
            kinds_written = [line.get("kind") for line in agent.transcripts()[0]]
            assert kinds_written.count("transfer_hold") == 1
            assert kinds_written.count("transfer_resume") == 1
        finally:
            peer.close()
            assert await agent.stop() == 0


def _mono(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    return (stereo.astype(np.int32).sum(axis=1) // 2).astype("<i2").tobytes()
