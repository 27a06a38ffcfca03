"""``voice-agent cluster``: Kamailio in front of two agents and one local backend, all real
processes on 127.0.0.1, called through the front door with SIPp and real RTP both ways."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.audio.levels import rms_dbfs
from testbed.cluster import ClusterProcess, call_through
from testbed.http_probe import sample, scrape
from testbed.peers import KAMAILIO, expect_503, free_rtp_port

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        KAMAILIO is None, reason="kamailio not installed (apt-get install kamailio)"
    ),
]

MAX_CALLS = 2


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[ClusterProcess]:
    profile = tmp_path / "cluster.toml"
    # Two calls per agent; the light backend (a voice-like tone, no models), run once.
    profile.write_text(f'[sip]\nmax_calls = {MAX_CALLS}\n[local]\nbackend = "synthetic"\n')
    rtp = free_rtp_port(span=2 * 4 * MAX_CALLS)
    cluster = ClusterProcess(
        # The front door's port, with the two after it (the workers') free too.
        free_rtp_port(span=3),
        ["--workers", "2", "--config", str(profile), "--rtp-port", f"{rtp}-{rtp + 15}"],
    )
    await cluster.start()
    try:
        yield cluster
    finally:
        assert await cluster.stop() == 0


def _agent_heard(call_audio: bytes) -> float:
    return rms_dbfs(call_audio) if call_audio else -120.0


async def test_cluster_takes_more_calls_than_one_agent_spread_over_both(
    cluster: ClusterProcess, tmp_path: Path
) -> None:
    ready = cluster.events("cluster_ready")[0]
    assert [w["rtp"] for w in ready["workers"]] != [ready["workers"][0]["rtp"]] * 2
    assert ready["backend"].startswith("ws://127.0.0.1:")
    # One more call at once than an agent takes: all answered, over both agents.
    calls = await asyncio.gather(
        *(call_through(cluster.sip_port, 4000, tmp_path) for _ in range(MAX_CALLS + 1))
    )
    for call in calls:
        assert call.result.returncode == 0, call.result.output[-2000:]
        # The agent's voice (the backend's reply tone) reached the caller over RTP ...
        assert _agent_heard(call.peer.audio()) > -45
    await cluster.wait_for("call_finished", 10, count=MAX_CALLS + 1)
    answered = cluster.answered_by()
    assert sorted(answered) == ["agent-1", "agent-2"], answered
    # ... and the caller's audio reached the backend from every call.
    for line in cluster.events("call_finished"):
        assert line["frames_sent"] > 100, line
        assert line["ended_by"] == "caller"

    # /metrics of each worker counts exactly the calls it answered.
    workers = cluster.workers()
    for name, worker in workers.items():
        text = await scrape(worker["http"])
        counted = sample(text, "voice_agent_calls_total", outcome="answered", ended_by="caller")
        assert counted == answered[name]
        assert sample(text, "voice_agent_active_calls") == 0

    # Every agent full: the front door itself answers 503 with a short Retry-After. (An
    # agent that was full is back in rotation at its next keep-alive, within a second.)
    await asyncio.sleep(1.5)
    busy = [
        asyncio.create_task(call_through(cluster.sip_port, 5000, tmp_path))
        for _ in range(2 * MAX_CALLS)
    ]
    await cluster.wait_for("call_answered", 15, count=len(calls) + 2 * MAX_CALLS)
    await expect_503(cluster.sip_port, "5", tmp_path)
    for call in await asyncio.gather(*busy):
        assert call.result.returncode == 0, call.result.output[-2000:]

    # SIGTERM on the cluster: every child stops, cleanly and in order.
    pids = [w["pid"] for w in workers.values()] + [ready["frontdoor_pid"]]
    assert await cluster.stop() == 0
    stopped = [line["proc"] for line in cluster.events("cluster_child_stopped")]
    assert stopped == ["agent-1", "agent-2", "frontdoor", "backend"]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def _preferred_worker(cluster: ClusterProcess, tmp_path: Path) -> str:
    """The worker the front door picks for a call when both are idle (call load: equal
    loads always pick the same one)."""
    before = cluster.answered_by()
    call = await call_through(cluster.sip_port, 300, tmp_path)
    assert call.result.returncode == 0, call.result.output[-2000:]
    await cluster.wait_for("call_finished", 10, count=sum(before.values()) + 1)
    after = cluster.answered_by()
    (name,) = [n for n in after if after[n] != before.get(n, 0)]
    return name


async def test_a_killed_agent_loses_no_new_call(cluster: ClusterProcess, tmp_path: Path) -> None:
    victim = await _preferred_worker(cluster, tmp_path)
    other = "agent-2" if victim == "agent-1" else "agent-1"
    os.kill(cluster.workers()[victim]["pid"], signal.SIGKILL)
    killed = time.monotonic()
    # The first call may still be sent to the dead agent (until the next keep-alive or its
    # INVITE's 1.5 s timeout): the front door fails it over to the other one.
    before = cluster.answered_by().get(other, 0)
    call = await call_through(cluster.sip_port, 500, tmp_path)
    assert call.result.returncode == 0, call.result.output[-2000:]
    assert call.seconds < 5.0
    await cluster.wait_for("call_finished", 10, count=before + 1, proc=other)
    # None is lost while the cluster starts the dead worker again (back in rotation once it
    # answers the keep-alives).
    for _ in range(2):
        call = await call_through(cluster.sip_port, 500, tmp_path)
        assert call.result.returncode == 0, call.result.output[-2000:]
    assert time.monotonic() - killed < 15
    # The cluster starts the dead worker again.
    exited = await cluster.wait_for("cluster_child_exited", 5, proc=victim)
    assert exited[0]["status"] == -signal.SIGKILL
    await cluster.wait_for("agent_listening", 30, count=2, proc=victim)


async def test_sigterm_on_an_agent_lets_its_calls_finish_and_sends_new_ones_elsewhere(
    cluster: ClusterProcess, tmp_path: Path
) -> None:
    victim = await _preferred_worker(cluster, tmp_path)
    other = "agent-2" if victim == "agent-1" else "agent-1"
    long_call = asyncio.create_task(call_through(cluster.sip_port, 6000, tmp_path))
    await cluster.wait_for("call_answered", 10, count=2, proc=victim)
    os.kill(cluster.workers()[victim]["pid"], signal.SIGTERM)
    await cluster.wait_for("agent_draining", 5, proc=victim)
    before = cluster.answered_by().get(other, 0)
    for call in await asyncio.gather(
        *(call_through(cluster.sip_port, 1000, tmp_path) for _ in range(2))
    ):
        assert call.result.returncode == 0, call.result.output[-2000:]
    await cluster.wait_for("call_finished", 10, count=before + 2, proc=other)
    # The draining agent's call ran to the caller's BYE, through the front door.
    done = await long_call
    assert done.result.returncode == 0, done.result.output[-2000:]
    assert done.seconds > 6.0
    finished = (await cluster.wait_for("call_finished", 10, count=2, proc=victim))[-1]
    assert finished["ended_by"] == "caller" and finished["duration_s"] > 5.5
    # Drained, it exited cleanly; the cluster started it again.
    exited = await cluster.wait_for("cluster_child_exited", 10, proc=victim)
    assert exited[0]["status"] == 0
