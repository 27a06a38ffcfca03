"""The event loop's niceness (``audio.loop_nice``): the loop thread runs ahead, the threads it
starts afterwards do not inherit it, and without the privilege the agent says why and runs on.

The checks run in child processes, so the test process keeps its own scheduling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.peers import AgentProcess, free_port
from testbed.recording import RecordingServer

#: Raises the loop priority, then starts a thread; prints what each runs at.
_CHILD = """
import json, os, threading
from agent.observe.loop_priority import raise_loop_priority
refused = raise_loop_priority(-5)
seen = []
worker = threading.Thread(
    target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
)
worker.start()
worker.join()
print(json.dumps({
    "refused": refused,
    "loop": os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
    "started_later": seen[0],
}))
"""


def _run_child(unprivileged: bool, rlimit_nice: int = 0) -> dict[str, object]:
    # As root, CAP_SYS_NICE leaves the bounding set for the child (util-linux's setpriv), as
    # in a container without it; RLIMIT_NICE stays the default 0 unless given (prlimit).
    drop = ["setpriv", "--bounding-set=-sys_nice", "--"] if unprivileged and _privileged() else []
    limit = ["prlimit", f"--nice={rlimit_nice}", "--"] if rlimit_nice else []
    result = subprocess.run(
        [*limit, *drop, sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    outcome: dict[str, object] = json.loads(result.stdout)
    return outcome


def _privileged() -> bool:
    return os.geteuid() == 0


@pytest.mark.skipif(not _privileged(), reason="needs CAP_SYS_NICE (runs as root in CI)")
def test_the_loop_runs_ahead_and_the_threads_it_starts_do_not() -> None:
    outcome = _run_child(unprivileged=False)
    assert outcome == {"refused": None, "loop": -5, "started_later": 0}


def _can_raise_limits() -> bool:
    """CAP_SYS_RESOURCE (bit 24): raising RLIMIT_NICE's hard limit needs it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


@pytest.mark.skipif(not _can_raise_limits(), reason="raising RLIMIT_NICE needs CAP_SYS_RESOURCE")
def test_rlimit_nice_is_enough_without_the_capability() -> None:
    """What the systemd unit (``LimitNICE=-10``) and compose (``ulimits: nice: 30``) give:
    a ceiling of 20 - 30 = -10, no capability needed."""
    outcome = _run_child(unprivileged=True, rlimit_nice=30)
    assert outcome == {"refused": None, "loop": -5, "started_later": 0}


def test_without_the_privilege_the_loop_stays_and_says_why() -> None:
    outcome = _run_child(unprivileged=True)
    assert outcome["loop"] == 0 and outcome["started_later"] == 0
    assert isinstance(outcome["refused"], str) and "CAP_SYS_NICE" in outcome["refused"]


async def test_a_serving_agent_runs_its_loop_at_loop_nice(
    local_server: RecordingServer, tmp_path: Path
) -> None:
    """The loop thread at ``audio.loop_nice``; every thread the agent started (the SIP
    stack's, executors) at 0."""
    config = tmp_path / "agent.toml"
    config.write_text("[audio]\nloop_nice = -7\n")
    agent = AgentProcess(
        free_port(), ["--realtime-url", local_server.url, "--config", str(config)], loop_nice=None
    )
    await agent.start()
    try:
        assert agent.proc is not None
        pid = agent.proc.pid
        threads = {int(task) for task in os.listdir(f"/proc/{pid}/task")}
        others = {os.getpriority(os.PRIO_PROCESS, tid) for tid in threads - {pid}}
        assert len(threads) > 1 and others == {0}
        if _privileged():
            [line] = agent.events("loop_priority")
            assert line["nice"] == -7
            assert os.getpriority(os.PRIO_PROCESS, pid) == -7
        else:
            [line] = agent.events("loop_priority_unavailable")
            assert "CAP_SYS_NICE" in line["reason"]
            assert os.getpriority(os.PRIO_PROCESS, pid) == 0
    finally:
        assert await agent.stop() == 0


async def test_on_pjsip_the_loop_stays_at_zero(local_server: RecordingServer) -> None:
    """PJSIP paces audio with its own media clock thread, which a loop ahead of it delays."""
    agent = AgentProcess(
        free_port(), ["--realtime-url", local_server.url, "--engine", "pjsip"], loop_nice=-7
    )
    await agent.start()
    try:
        assert agent.proc is not None
        assert os.getpriority(os.PRIO_PROCESS, agent.proc.pid) == 0
        assert not agent.events("loop_priority") and not agent.events("loop_priority_unavailable")
    finally:
        assert await agent.stop() == 0


@pytest.mark.skipif(not _privileged(), reason="needs CAP_SYS_NICE (runs as root in CI)")
async def test_loop_nice_on_the_command_line_wins_over_the_profile(
    local_server: RecordingServer, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("[audio]\nloop_nice = -7\n")
    agent = AgentProcess(
        free_port(), ["--realtime-url", local_server.url, "--config", str(config)], loop_nice=-3
    )
    await agent.start()
    try:
        assert agent.proc is not None
        assert os.getpriority(os.PRIO_PROCESS, agent.proc.pid) == -3
    finally:
        assert await agent.stop() == 0
