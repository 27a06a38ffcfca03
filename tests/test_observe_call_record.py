"""The call record in memory: what it is built from, atomic writes, failures kept and retried,
retention of call files, the recording notice file, and the turn latency timer."""

from __future__ import annotations

import asyncio
import json
import os
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.audio.notice import NoticeError, load_notice
from agent.audio.playout import Playout
from agent.bridge.turns import TurnTimer
from agent.config import ConfigError, load_settings
from agent.observe import record_store
from agent.observe.call_record import CallFacts, build_call_record, iso_utc
from agent.observe.ids import new_call_id
from agent.observe.logging import register_secret
from agent.observe.record_store import RecordStore, write_atomically
from agent.observe.retention import is_call_file, sweep


def _facts(**changes: Any) -> CallFacts:
    fields: dict[str, Any] = {
        "call_id": "01J0000000000000000000000A",
        "sip_call_id": "abc@host",
        "caller": "alice",
        "dialed": "agent",
        "caller_uri": "sip:alice@127.0.0.1",
        "dialed_uri": "sip:agent@127.0.0.1",
        "profile": "agent",
        "provider": "local",
        "protocol": "realtime",
        "model": "gpt-realtime-2.1",
        "invite_at": 1_767_225_600.0,
        "answered_at": 1_767_225_600.25,
        "ended_at": 1_767_225_610.5,
        "ended_by": "caller",
        "reason": "the caller hung up",
        "sip_code": 200,
        "barge_ins": 1,
        "turn_latencies_ms": [900, 700, 1200],
        "usage": {"input_tokens": 12},
        "rtp": {"rx_lost": 0, "rx_jitter_ms_mean": 0.4},
    }
    fields.update(changes)
    return CallFacts(**fields)


_LINES = [
    {"role": "event", "kind": "call_start"},
    {"role": "agent", "text": "Hello."},
    {"role": "caller", "text": "Hi."},
    {
        "role": "event",
        "kind": "tool_call",
        "tool": "order_status",
        "tool_call_id": "c1",
        "origin": "model",
        "arguments": {"order": "42"},
        "outcome": "ok",
        "duration_ms": 12,
        "output_chars": 30,
    },
    {"role": "agent", "text": "It ships", "interrupted": True, "cut_by": "barge-in"},
    {"role": "event", "kind": "call_end"},
]


def test_the_record_counts_what_the_transcript_says() -> None:
    record = build_call_record(_facts(), _LINES)
    assert record["times"] == {
        "invite": "2026-01-01T00:00:00.000Z",
        "answer": "2026-01-01T00:00:00.250Z",
        "end": "2026-01-01T00:00:10.500Z",
        "ring_ms": 250,
        "talk_ms": 10250,
    }
    assert record["turns"] == {"caller": 1, "agent": 2, "agent_interrupted": 1}
    assert record["latency"] == {"turns_ms": [900, 700, 1200], "median_ms": 900, "max_ms": 1200}
    assert record["tool_calls"] == [
        {
            "tool": "order_status",
            "tool_call_id": "c1",
            "origin": "model",
            "arguments": {"order": "42"},
            "outcome": "ok",
            "duration_ms": 12,
        }
    ]
    assert (record["ended_by"], record["reason"], record["barge_ins"]) == (
        "caller",
        "the caller hung up",
        1,
    )
    assert record["usage"] == {"input_tokens": 12}
    json.dumps(record)  # plain JSON throughout


def test_an_unanswered_call_has_no_answer_time() -> None:
    record = build_call_record(_facts(answered_at=None, turn_latencies_ms=[]), [])
    assert record["times"]["answer"] is None and record["times"]["talk_ms"] == 0
    assert record["latency"] == {"turns_ms": []}
    assert iso_utc(None) is None


def test_an_atomic_write_leaves_the_whole_record_or_none(tmp_path: Path) -> None:
    path = tmp_path / "r" / "x.json"
    write_atomically(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert not list(path.parent.glob("*.tmp"))


async def test_a_failed_write_is_logged_once_kept_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(record_store, "RETRY_S", (0.05,))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    path = blocked / "call.json"
    store = RecordStore()
    register_secret("sk-test-secret-value-1234")
    record = {"call_id": "C1", "reason": "key sk-test-secret-value-1234", "usage": {"tokens": 3}}
    assert not await store.save(path, record)
    assert path in store.pending
    await asyncio.sleep(0.2)
    assert path in store.pending  # still failing: kept, retried quietly
    blocked.unlink()
    deadline = asyncio.get_running_loop().time() + 2
    while store.pending and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert not store.pending
    written = json.loads(path.read_text())
    assert written["call_id"] == "C1"
    assert "sk-test-secret-value-1234" not in written["reason"]
    assert written["usage"] == {"tokens": 3}  # keys are data, not masked
    await store.close()


async def test_at_shutdown_a_record_that_cannot_be_written_goes_to_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost: list[dict[str, Any]] = []

    class Log:
        def error(self, event: str, **fields: Any) -> None:
            lost.append({"event": event, **fields})

        def info(self, event: str, **fields: Any) -> None:
            pass

    monkeypatch.setattr(record_store, "log", Log())
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    store = RecordStore()
    assert not await store.save(blocked / "c.json", {"call_id": "C2"})
    await store.close()
    assert [line["event"] for line in lost] == [
        "call_record_write_failed",
        "call_record_lost_to_log",
    ]
    assert lost[0]["call_id"] == "C2" and lost[1]["record"] == {"call_id": "C2"}


def test_retention_removes_only_old_call_files(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    old, new = now - 8 * 86_400, now - 86_400
    names = {f"20260101T000000-{new_call_id()}.{ext}": old for ext in ("wav", "json", "jsonl")}
    keep_recent = f"20260108T000000-{new_call_id()}.wav"
    keep_other = "operator-notes.wav"
    names |= {keep_recent: new, keep_other: old}
    for name, mtime in names.items():
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (mtime, mtime))
    removed = sweep(tmp_path, 7, now=now)
    assert len(removed) == 3 and all(is_call_file(path) for path in removed)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([keep_recent, keep_other])
    assert sweep(tmp_path, 0, now=now) == []  # 0 keeps forever


def _write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def test_the_notice_is_read_mixed_down_and_resampled(tmp_path: Path) -> None:
    path = tmp_path / "notice.wav"
    stereo = np.column_stack([np.full(16000, 1000), np.full(16000, 3000)]).reshape(-1)
    _write_wav(path, stereo, 16000, channels=2)
    notice = load_notice(path)
    assert notice.rate == 16000 and len(notice.pcm) == 2 * 16000
    assert set(np.frombuffer(notice.pcm, dtype="<i2").tolist()) == {2000}
    at_8k = notice.at_rate(8000)
    assert abs(len(at_8k) - 2 * 8000) <= 2 * 40
    assert notice.at_rate(16000) is notice.pcm


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "does not exist"), (b"not a wav", "not a readable WAV")],
)
def test_a_bad_notice_file_is_one_clear_error(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "notice.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(NoticeError, match=problem):
        load_notice(path)


def test_turn_latency_runs_from_speech_end_to_the_first_pull() -> None:
    playout = Playout()
    timer = TurnTimer()
    timer.caller_stopped(1000.0)
    playout.push("item_a", bytes(320 * 5))
    timer.agent_audio("item_a")
    timer.check(playout, 1500.0)
    assert timer.latencies_ms == []  # queued, not heard yet
    playout.pull()  # the first frame goes to the line at ~1520
    playout.pull()
    timer.check(playout, 1540.0)  # checked one tick later
    assert timer.latencies_ms == [520]
    # The greeting (no caller turn before it) and a caller who resumed talking count nothing.
    timer.agent_audio("item_b")
    timer.caller_stopped(2000.0)
    timer.caller_started()
    playout.push("item_c", bytes(320))
    timer.agent_audio("item_c")
    playout.pull()
    timer.check(playout, 2600.0)
    assert timer.latencies_ms == [520]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[records]\nrecording_notice = "/nonexistent/notice.wav"\n', "does not exist"),
        ("[records]\nretention_days = -1\n", "retention_days"),
    ],
)
def test_bad_record_settings_stop_the_start(tmp_path: Path, text: str, message: str) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(profile, environ={})


def test_an_outbound_calls_record_carries_its_answering_machine_verdict() -> None:
    amd = {"verdict": "machine", "decided_ms": 2700, "reason": "greeting longer than 2500 ms",
           "beep_ms": 6600, "beep_hz": 1000, "greeting_end": "beep", "greeting_end_ms": 7100,
           "on_machine": "message"}  # fmt: skip
    record = build_call_record(_facts(amd=amd), _LINES)
    assert record["amd"] == amd
    assert json.loads(json.dumps(record))["amd"]["beep_ms"] == 6600
    assert build_call_record(_facts(), _LINES)["amd"] is None  # an inbound call: none ran
