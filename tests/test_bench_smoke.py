"""Smoke runs of the benchmarks in bench/, so that they keep working as the agent changes.

Each runs its benchmark's own code in quick mode (two calls of a few seconds, or a couple of
interruptions) and checks the shape and sanity of the result: every call answered, nothing
failed, figures present and physically possible. Never a wall-clock threshold: how fast is
what the benchmarks report, not what tests assert.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import barge_in, capacity, latency, pacing
from bench.harness import AgentAudio, lower_priority, write_json
from testbed.peers import DEFAULT_SIP_ENGINE, REPO

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(180)]


def _round_trip(result: dict[str, Any], path: Path) -> dict[str, Any]:
    """What the benchmark would write, read back (it must be plain JSON)."""
    write_json(result, path)
    return json.loads(path.read_text())


def _percentiles_ok(figures: dict[str, Any], lowest: float = 0.0) -> None:
    assert figures["count"] > 0
    assert lowest <= figures["p50"] <= figures["p99"] <= figures["max"]


async def test_capacity_quick(engine: str, tmp_path: Path) -> None:
    result = _round_trip(
        await capacity.run([2], call_s=3.0, audio=AgentAudio(), extend=False, engines=[engine]),
        tmp_path / "capacity.json",
    )
    (row,) = result["levels"]
    assert row["engine"] == engine
    assert row["calls"] == 2 and row["agents"] == 1
    assert row["answered"] == 2
    assert row["failed"] == 0 and row["rejected_503"] == 0
    assert row["frames_lost"] >= 0 and row["inbound_dropped"] >= 0
    # The caller's audio reached the server and the agent's reached the caller.
    assert row["frames_appended"] > 0 and row["caller_frames_sent"] > 0
    assert row["empty_appends"] == 0
    _percentiles_ok(row["jitter_ms"])
    # Both callers' tone markers were found in the appended audio and timed: each reached
    # the server after it was sent, and well inside a second.
    assert row["inbound_timed_calls"] == 2
    _percentiles_ok(row["inbound_latency_ms"], lowest=0.0)
    assert row["inbound_latency_ms"]["max"] < 1000
    assert row["inbound_resampler_ms"]["p50"] % 20 == 0
    assert row["agent_cpu_ms_per_call_s"] > 0
    assert row["loop_thread_ms_per_call_s"] > 0 and row["media_threads_ms_per_call_s"] > 0
    assert row["rss_mb_per_call"] > 0 and row["pss_mb_per_call"] > 0
    assert result["largest_clean_calls"][engine] in (0, 2)
    assert "Successful" not in capacity.format_table(result)  # renders, no SIPp noise


def test_the_harness_runs_below_the_agents_priority() -> None:
    """``--harness-nice``: every thread of a helper, those it started before too."""
    helper = subprocess.Popen(
        [sys.executable, "-c", "import threading, time; threading.Thread(target=time.sleep,"
         " args=(30,)).start(); print(flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert helper.stdout is not None and helper.stdout.readline() == b"\n"
        lower_priority(helper.pid, 7)
        tasks = list(Path(f"/proc/{helper.pid}/task").iterdir())
        assert len(tasks) == 2
        assert all(os.getpriority(os.PRIO_PROCESS, int(task.name)) == 7 for task in tasks)
    finally:
        helper.kill()
        helper.wait()


@pytest.mark.above_sip
async def test_latency_quick(engine: str, tmp_path: Path) -> None:
    result = _round_trip(
        await latency.run([AgentAudio()], calls=2, call_s=3.0, engine=engine),
        tmp_path / "latency.json",
    )
    (row,) = result["rows"]
    assert row["calls_failed"] == 0
    for direction in ("inbound", "outbound"):
        part = row[direction]
        # A frame can only arrive after it was sent: every latency is positive.
        _percentiles_ok(part["total_ms"], lowest=0.0)
        # The resampler delays a marker by whole 20 ms frames.
        assert part["resampler_ms"]["p50"] % 20 == 0
    assert row["resampler_holdback_ms"]["inbound_max"] > 0
    assert "inbound" in latency.format_table(result)


@pytest.mark.above_sip
async def test_barge_in_quick(engine: str, tmp_path: Path) -> None:
    result = _round_trip(
        await barge_in.run(interruptions=2, calls=1, audio=AgentAudio(), seed=1, engine=engine),
        tmp_path / "barge_in.json",
    )
    assert result["calls_failed"] == 0
    assert result["interruptions_measured"] == 2
    assert result["truncates_received"] == 2
    assert result["stop_ms"]["count"] == 2
    _percentiles_ok(result["truncate_error_ms"])
    _percentiles_ok(result["heard_ms"], lowest=1.0)
    assert "interruptions" in barge_in.format_table(result)


def test_swig_callbacks_quick(tmp_path: Path) -> None:
    # Its own process: it creates a PJSUA2 library, which this process must not hold.
    out = tmp_path / "swig.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.swig_callbacks", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [row["port"] for row in result["rows"]] == ["empty", "bridge"]
    assert all(len(row["us_per_callback_runs"]) == 1 for row in result["rows"])


def test_resampler_quick(tmp_path: Path) -> None:
    out = tmp_path / "resampler.json"
    done = subprocess.run(
        [sys.executable, "bench/resampler.py", "--frames", "50", "--repeats", "1", "--json", out],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {row["quality"] for row in rows} >= {"LQ", "MQ"}


def test_bridge_uplink_quick(tmp_path: Path) -> None:
    out = tmp_path / "bridge_uplink.json"
    done = subprocess.run(
        [sys.executable, "bench/bridge_uplink.py", "--frames", "50", "--repeats", "1",
         "--json", out],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["uplink_us_per_frame"]) == {"soxr LQ", "G.711 passthrough"}
    assert all(us > 0 for us in result["ulaw_encode_us_per_frame"].values())


async def test_pacing_quick(tmp_path: Path) -> None:
    result = _round_trip(await pacing.run([10], 1.0, "asyncio"), tmp_path / "pacing.json")
    assert [(row["mode"], row["calls"]) for row in result["rows"]] == [
        ("kernel", 10),
        ("loop", 10),
        ("tasks", 10),
    ]
    for row in result["rows"]:
        assert row["cpu_ms_per_call_s"] > 0
        # About fifty beats in a second, each a distance from 20 ms.
        assert row["jitter_ms"]["count"] >= 40
        _percentiles_ok(row["jitter_ms"], lowest=0.0)
    table = pacing.format_table(result)
    assert "ratios against the loop-timer clock" in table and "   10: kernel " in table


def test_rtcp_jitter_is_rfc3550s_smoothed_estimate() -> None:
    steady = capacity.rfc3550_jitter_ms(np.full(200, 20.0))
    assert steady.max() == 0.0
    # Packets alternately 4 ms early and late: |D| is 4 ms every time, so J converges to 4.
    wobbly = capacity.rfc3550_jitter_ms(np.array([16.0, 24.0] * 100))
    assert 3.9 < wobbly[-1] <= 4.0
    # A single 10 ms step in transit time moves the estimate by a sixteenth of it.
    spike = capacity.rfc3550_jitter_ms(np.array([20.0] * 50 + [30.0] + [20.0] * 10))
    assert spike.max() == 10.0 / 16


async def test_latency_quick_on_gpt_live_over_both_transports(tmp_path: Path) -> None:
    modes = [AgentAudio(), AgentAudio(passthrough=True)]
    transports = ("websocket", "webrtc")
    run = latency.run(modes, 1, 3.0, DEFAULT_SIP_ENGINE, transports, protocol="live")
    result = _round_trip(await run, tmp_path / "latency.json")
    rows = {(row["transport"], row["audio"]) for row in result["rows"]}
    # Live on WebSocket takes the call's G.711 as is; over WebRTC it is resampled to Opus.
    assert rows == {("websocket", "G.711 passthrough"), ("webrtc", "soxr LQ")}
    for row in result["rows"]:
        assert row["protocol"] == "live" and row["calls_failed"] == 0
        for direction in ("inbound", "outbound"):
            _percentiles_ok(row[direction]["total_ms"], lowest=0.0)
