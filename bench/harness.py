"""What the SIP benchmarks share: agent processes, helper processes, the SIPp run, statistics.

Everything binds to 127.0.0.1, every wait is bounded, and every process started here is
stopped by its own pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import MAX_CALLS_PER_PROCESS
from testbed.peers import REPO, AgentProcess, engine_args, free_port, free_rtp_port

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SIPP = shutil.which("sipp")
#: Calls one PJSIP agent process carries: the pjsua2 wheel's call slots (README "SIP engines").
CALLS_PER_AGENT = MAX_CALLS_PER_PROCESS
#: RTP ports each PJSIP agent may use: 4 call slots x (RTP + RTCP), kept apart between agents.
_RTP_PORTS_PER_AGENT = 16
RTP_BASE_PORT = 20000


def calls_per_process(engine: str, calls: int) -> int:
    """How many of ``calls`` one agent process takes: all of them on baresip (no call
    slots), the wheel's slots on PJSIP."""
    return max(1, calls) if engine == "baresip" else CALLS_PER_AGENT


def rtp_ports_per_process(engine: str, calls: int) -> int:
    """RTP ports one agent process may use: RTP + RTCP per call, with room to spare for
    baresip, which picks its ports at random within the range."""
    if engine == "baresip":
        return max(16, 4 * calls)
    return _RTP_PORTS_PER_AGENT


@dataclass(frozen=True)
class AgentAudio:
    """The audio settings a benchmark runs the agents with (``[audio]`` of the profile)."""

    quality: str = "LQ"
    passthrough: bool = False
    batch_ms: int = 20
    #: ``audio.loop_nice`` (the agent's default: -10).
    loop_nice: int = -10
    #: ``sip.max_loop_busy``; 1.0 (off) unless asked, so a level measures what the engine
    #: carries rather than what the agent's overload guard lets in (its default: 0.9).
    max_loop_busy: float = 1.0

    @property
    def label(self) -> str:
        base = "G.711 passthrough" if self.passthrough else f"soxr {self.quality}"
        if self.batch_ms != 20:
            base += f", {self.batch_ms} ms appends"
        if self.loop_nice != -10:
            base += f", loop niceness {self.loop_nice}"
        if self.max_loop_busy < 1.0:
            base += f", max_loop_busy {self.max_loop_busy}"
        return base


def agent_config(
    path: Path,
    index: int,
    audio: AgentAudio,
    *,
    interrupt_response: bool = True,
    engine: str = "pjsip",
    max_calls: int = CALLS_PER_AGENT,
    rtp_base: int = RTP_BASE_PORT,
) -> Path:
    """A TOML profile for agent ``index``: its engine, its own RTP ports, a greeting, no
    transcripts."""
    ports = rtp_ports_per_process(engine, max_calls)
    rtp_port = rtp_base + index * ports
    path.write_text(
        "[sip]\n"
        f'engine = "{engine}"\n'
        f"max_calls = {max_calls}\n"
        f"max_loop_busy = {audio.max_loop_busy}\n"
        f"rtp_port = {rtp_port}\n"
        f"rtp_port_range = {ports}\n"
        # G.711 calls (SIPp offers PCMU): the figures in the README were measured so.
        'codecs = ["PCMU", "PCMA"]\n'
        "session_timeout_s = 20.0\n"
        "[agent]\n"
        # The greeting's response.create is what starts the bench server's reply.
        'greeting = "Talk until the caller hangs up."\n'
        "[agent.turn_detection]\n"
        f"interrupt_response = {'true' if interrupt_response else 'false'}\n"
        "[audio]\n"
        f'resampler_quality = "{audio.quality}"\n'
        f"g711_passthrough = {'true' if audio.passthrough else 'false'}\n"
        f"append_batch_ms = {audio.batch_ms}\n"
        f"loop_nice = {audio.loop_nice}\n"
        "[records]\n"
        'dir = ""\n'
    )
    return path


async def start_agents(
    count: int,
    realtime_url: str,
    workdir: Path,
    audio: AgentAudio | None = None,
    *,
    interrupt_response: bool = True,
    parallel: int = 4,
    timeout_s: float = 90.0,
    engine: str = "pjsip",
    max_calls: int = CALLS_PER_AGENT,
    sip_ports: Sequence[int] | None = None,
    rtp_base: int = RTP_BASE_PORT,
    extra_args: Sequence[str] = (),
) -> list[AgentProcess]:
    """Start ``count`` agents, a few at a time (each one's start-up is CPU-bound imports),
    on ``sip_ports`` (free ports when not given)."""
    if sip_ports is not None and len(sip_ports) < count:
        raise ValueError(f"{count} agents need {count} SIP ports, {len(sip_ports)} given")
    gate = asyncio.Semaphore(parallel)
    agents: list[AgentProcess] = []

    async def one(index: int) -> None:
        config = agent_config(
            workdir / f"agent{index}.toml",
            index,
            audio or AgentAudio(),
            interrupt_response=interrupt_response,
            engine=engine,
            max_calls=max_calls,
            rtp_base=rtp_base,
        )
        port = free_port() if sip_ports is None else sip_ports[index]
        agent = AgentProcess(
            port,
            [
                "--realtime-url",
                realtime_url,
                "--config",
                str(config),
                *engine_args(engine),
                *extra_args,
            ],
            loop_nice=None,  # the profile's: audio.loop_nice, as a deployment runs it
        )
        agents.append(agent)
        async with gate:
            await agent.start(timeout_s)

    try:
        await asyncio.gather(*(one(i) for i in range(count)))
    except BaseException:
        await stop_agents(agents)
        raise
    return sorted(agents, key=lambda a: a.sip_port)


async def stop_agents(agents: Iterable[AgentProcess]) -> None:
    async def one(agent: AgentProcess) -> None:
        if agent.proc is not None:
            await agent.stop(timeout_s=20.0)

    await asyncio.gather(*(one(a) for a in agents), return_exceptions=True)


def agent_pid(agent: AgentProcess) -> int:
    assert agent.proc is not None
    return agent.proc.pid


class Child:
    """A helper process speaking JSON lines on stdout: the first says it is ready."""

    def __init__(self, proc: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.proc = proc
        self.ready = ready

    @classmethod
    async def start(cls, module: str, *args: str, timeout_s: float = 30.0) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args, cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
            ready = json.loads(line)
        except (TimeoutError, ValueError):
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"{module} did not start") from None
        return cls(proc, ready)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """SIGTERM, then its last JSON line (it saves its results before exiting)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.stdout is not None
        try:
            rest, _ = await asyncio.wait_for(self.proc.communicate(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise RuntimeError("helper process did not stop in time") from None
        lines = [line for line in rest.decode().splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else {}


@dataclass
class SippOutcome:
    returncode: int
    successful: int
    failed: int
    output: str


_SIPP_COUNTER = re.compile(r"^\s*(Successful|Failed) call\s*\|\s*\d+\s*\|\s*(\d+)", re.M)


async def start_sipp(
    targets: Sequence[tuple[int, int]],
    workdir: Path,
    *,
    call_ms: int,
    rate: float,
    timeout_s: float,
    sip_port: int | None = None,
    media_port: int | None = None,
) -> asyncio.subprocess.Process:
    """SIPp placing one call per (agent SIP port, caller RTP port) pair, all concurrent."""
    assert SIPP is not None, "sipp is not installed (apt-get install sip-tester)"
    calls_csv = workdir / "calls.csv"
    calls_csv.write_text(
        "SEQUENTIAL\n" + "".join(f"{sip};{rtp};\n" for sip, rtp in targets), encoding="ascii"
    )
    command = [
        SIPP, f"127.0.0.1:{targets[0][0]}", "-sf", str(BENCH / "sipp" / "uac_bench.xml"),
        "-inf", str(calls_csv), "-i", "127.0.0.1", "-p", str(sip_port or free_port()),
        "-mi", "127.0.0.1", "-mp", str(media_port or free_rtp_port()),
        "-m", str(len(targets)), "-l", str(len(targets)), "-r", f"{rate:g}", "-d", str(call_ms),
        "-nostdin", "-timeout", f"{math.ceil(timeout_s)}s", "-timeout_error",
        "-recv_timeout", "30s",
    ]  # fmt: skip
    return await asyncio.create_subprocess_exec(
        *command, cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def finish_sipp(proc: asyncio.subprocess.Process, timeout_s: float) -> SippOutcome:
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    counts = {kind: int(value) for kind, value in _SIPP_COUNTER.findall(text)}
    return SippOutcome(
        int(proc.returncode or 0), counts.get("Successful", 0), counts.get("Failed", 0), text
    )


def percentiles(values: Sequence[float] | np.ndarray, digits: int = 2) -> dict[str, float | None]:
    """p50, p99 and max (None when there is nothing to summarise)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {"p50": None, "p99": None, "max": None, "count": 0}
    return {
        "p50": round(float(np.percentile(data, 50)), digits),
        "p99": round(float(np.percentile(data, 99)), digits),
        "max": round(float(data.max()), digits),
        "count": int(data.size),
    }


def lower_priority(pid: int, nice: int) -> None:
    """Every thread of ``pid`` at niceness ``nice`` (Linux sets it per thread), so the
    agents under test come first when the cores run short."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, int(task), nice)


def environment() -> dict[str, Any]:
    """What the figures were measured on."""
    import soxr
    import websockets

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "websockets": websockets.__version__,
        "python_soxr": soxr.__version__,
        "sipp": _sipp_version(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def _sipp_version() -> str:
    if SIPP is None:
        return ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([SIPP, "-v"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"SIPp (v[\w.\-]+)", out)
        if match:
            return match.group(1)
    return "unknown"


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
