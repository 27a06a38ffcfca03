"""Capacity benchmark: N concurrent SIP calls with two-way G.711 audio against voice-agent.

Usage: uv run python bench/capacity.py [--engine baresip,pjsip] [--quick] [--json PATH]
       [--levels 10,50,100,150,200] [--call-s 30] [--sip-ports 5300-5399] [--rtp-ports 30000-31999]
       [--max-loop-busy 0.9]

SIPp places N concurrent calls (each `--call-s` long); a caller process (bench/rtp_caller.py)
carries each call's RTP both ways; the realtime side is bench/stream_server.py in its own
process (a steady tone reply, no models), so the agent's CPU is the bridge's alone. On the
baresip engine one agent process takes all N calls; on PJSIP one process takes at most 4
(the pjsua2 wheel's call slots, see README "SIP engines"), so N calls run on ceil(N/4) agents on
their own SIP ports, SIPp spreading the calls over them. With several engines (the default:
both), each level runs on each engine in turn, and the table ends with their ratios.

Per N it reports: calls answered and failed; agent CPU per second of call (all agent
processes, from /proc, over the steady window when every call is up), split into the
asyncio thread and the stack's own threads (PJSIP's media clock, which runs the frame
callbacks; baresip's SIP/RTP thread and per-call transmit threads); RSS and PSS
per call; frames lost (inbound frames the agent dropped, gaps inside the agent's audio as
the agent counted them and as the caller heard them, RTP packets lost); the caller-side
inter-arrival jitter of the agent's RTP (|interval - 20 ms|, kernel receive timestamps);
the inbound added latency on up to ``MARKER_LEGS`` calls, whose callers send tone markers
that the stream server finds in the appended audio (the caller's send to the server's read
of that append, p50/p99, and the share the resampler holds back); and the CPU of the helpers
and the whole machine, to see when the 2 cores run out.
The helpers (stream server, caller, SIPp) stand in for other machines but share these cores;
``--harness-nice 10`` runs them at a lower priority, so the agents get the cores first, as
they would on a machine of their own.
Levels after the listed ones keep going (150, 200, 300, ...) while a level stays clean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import procstat
from bench.harness import (
    CALLS_PER_AGENT,
    RESULTS,
    RTP_BASE_PORT,
    AgentAudio,
    Child,
    agent_pid,
    calls_per_process,
    environment,
    finish_sipp,
    lower_priority,
    percentiles,
    rtp_ports_per_process,
    start_agents,
    start_sipp,
    stop_agents,
    write_json,
)
from bench.latency import Sample, inbound_samples, pair_up
from bench.rtp_caller import FRAME_MS, FRAME_NS, LegRecord, load_legs, marker_period
from bench.stream_server import MARKER_LEG_ONSETS, Onset
from testbed.peers import AgentProcess

DEFAULT_JSON = RESULTS / "capacity.json"
DEFAULT_LEVELS = (10, 50, 100, 150, 200)
EXTRA_LEVELS = (250, 300, 400)
ENGINES = ("baresip", "pjsip")
SAMPLE_INTERVAL_S = 0.5
MACHINE_EVERY = 4
#: Calls per level whose caller sends tone markers, each timed to the stream server (the
#: inbound added latency); the rest send a steady tone the server does not decode.
MARKER_LEGS = 10


def marker_legs_of(calls: int) -> range:
    """Which legs send markers: from the eleventh on when there are enough (their markers
    come 300-480 ms apart, so a marker is told from the next even when the inbound path
    holds it for 300 ms under load), else the first (100-280 ms apart)."""
    first = MARKER_LEGS if calls >= 2 * MARKER_LEGS else 0
    return range(first, min(calls, first + MARKER_LEGS))


@dataclass
class Timeline:
    """/proc samples taken while the calls run.

    ``points``: (monotonic ns, {pid: sample}) of our processes, twice a second. ``machine``:
    (monotonic ns, every thread's CPU) once every MACHINE_EVERY points, to see how much else
    ran on the cores meanwhile (reading every thread costs more than our own few).
    """

    points: list[tuple[int, dict[int, procstat.ProcSample]]] = field(default_factory=list)
    machine: list[tuple[int, dict[tuple[int, int], int]]] = field(default_factory=list)
    pss: dict[int, int] = field(default_factory=dict)

    def take(self, pids: Sequence[int]) -> None:
        samples = {pid: s for pid in pids if (s := procstat.sample(pid)) is not None}
        self.points.append((time.monotonic_ns(), samples))
        if len(self.points) % MACHINE_EVERY == 1:
            self.machine.append((time.monotonic_ns(), procstat.all_tasks_ns()))

    def around(self, start_ns: int, end_ns: int) -> tuple[Any, Any] | None:
        """The first sample at or after ``start_ns`` and the last at or before ``end_ns``."""
        inside = [p for p in self.points if start_ns <= p[0] <= end_ns]
        if len(inside) < 2:
            return None
        return inside[0], inside[-1]

    def others_ms_per_s(self, start_ns: int, end_ns: int, ours: set[int]) -> float | None:
        """CPU used by every other process on the machine within the window (lower bound)."""
        inside = [m for m in self.machine if start_ns <= m[0] <= end_ns]
        if len(inside) < 2:
            return None
        (t0, before), (t1, after) = inside[0], inside[-1]
        return procstat.tasks_delta_ns(before, after, ours) / 1e6 / ((t1 - t0) / 1e9)


async def _sample_until(
    timeline: Timeline, pids: Sequence[int], stop: asyncio.Event, pss_at: float
) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        timeline.take(pids)
        if not timeline.pss and loop.time() >= pss_at:
            timeline.pss = {pid: procstat.pss_bytes(pid) for pid in pids}
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL_S)


async def _idle_cost(pids: Sequence[int], seconds: float) -> dict[str, float]:
    """CPU and memory of the agents before any call: what each process costs doing nothing."""
    before = {pid: procstat.sample(pid) for pid in pids}
    await asyncio.sleep(seconds)
    after = {pid: procstat.sample(pid) for pid in pids}
    cpu = [
        (a.cpu_ns - b.cpu_ns) / 1e6 / seconds
        for pid in pids
        if (a := after[pid]) is not None and (b := before[pid]) is not None
    ]
    rss = [s.rss for s in after.values() if s is not None]
    pss = [procstat.pss_bytes(pid) for pid in pids]
    return {
        "cpu_ms_per_s_per_process": round(float(np.mean(cpu)), 2) if cpu else 0.0,
        "rss_mb_per_process": round(float(np.mean(rss)) / 2**20, 1) if rss else 0.0,
        "pss_mb_per_process": round(float(np.mean(pss)) / 2**20, 1) if pss else 0.0,
    }


async def _await_media_stats(agents: Sequence[AgentProcess], calls: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(len(a.events("media_stats")) for a in agents) >= calls:
            return
        await asyncio.sleep(0.1)


@dataclass
class LevelRun:
    """Everything one level produced, before analysis."""

    calls: int
    agents: list[AgentProcess]
    helper_pids: dict[str, int]
    legs: list[LegRecord]
    server: list[dict[str, Any]]
    timeline: Timeline
    idle: dict[str, float]
    sipp_successful: int
    sipp_failed: int
    sipp_returncode: int
    sipp_tail: str
    engine: str = "pjsip"
    harness_nice: int = 0
    audio: AgentAudio = field(default_factory=AgentAudio)
    #: The legs that sent tone markers, timed from the caller to the server.
    marker_legs: range = range(0)


@dataclass(frozen=True)
class Ports:
    """Where the agents listen: SIP ports to use in turn (free ones when None), the first RTP
    port, and SIPp's own SIP and media ports (free ones when None)."""

    sip: tuple[int, ...] | None = None
    rtp_base: int = RTP_BASE_PORT
    sipp_media: int | None = None

    def agents(self, count: int) -> tuple[int, ...] | None:
        if self.sip is None:
            return None
        if len(self.sip) < count + 1:
            raise ValueError(f"{count} agents and SIPp need {count + 1} SIP ports")
        return self.sip[:count]

    @property
    def sipp(self) -> int | None:
        return None if self.sip is None else self.sip[-1]


async def _profile(pid: int, delay_s: float, seconds: float, out: Path) -> None:
    """py-spy's view of one agent process in the steady window (raw collapsed stacks)."""
    await asyncio.sleep(delay_s)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    proc = await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
        "--rate", "500", "--format", "raw", "--nonblocking", "--threads",
        "--output", str(out), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.wait_for(proc.wait(), seconds + 30)


async def run_level(
    calls: int,
    call_s: float,
    workdir: Path,
    audio: AgentAudio,
    profile: Path | None = None,
    engine: str = "pjsip",
    ports: Ports = Ports(),
    harness_nice: int = 0,
) -> LevelRun:
    """Place ``calls`` concurrent calls on ``engine`` and record everything about them; the
    stream server, the caller and SIPp at niceness ``harness_nice``."""
    per_process = calls_per_process(engine, calls)
    agents_needed = max(1, math.ceil(calls / per_process))
    marker_legs = marker_legs_of(calls)
    server = await Child.start(
        "bench.stream_server", "--out", str(workdir / "server.json"), "--markers"
    )
    caller = await Child.start(
        "bench.rtp_caller", "--legs", str(calls), "--out", str(workdir / "caller.npz"),
        "--max-seconds", str(call_s + 300),
        "--marker-legs", f"{marker_legs.start}-{marker_legs.stop - 1}",
    )  # fmt: skip
    for child in (server, caller):
        lower_priority(child.pid, harness_nice)
    agents: list[AgentProcess] = []
    timeline = Timeline()
    stop_sampling = asyncio.Event()
    try:
        agents = await start_agents(
            agents_needed, server.ready["url"], workdir, audio, engine=engine,
            max_calls=per_process, sip_ports=ports.agents(agents_needed),
            rtp_base=ports.rtp_base,
        )  # fmt: skip
        pids = [agent_pid(a) for a in agents]
        idle = await _idle_cost(pids, 2.0)
        legs = caller.ready["ports"]
        targets = [(agents[i % len(agents)].sip_port, legs[i]) for i in range(calls)]
        # Spread the INVITEs over at most ~10 s so every call is up for most of its length.
        rate = max(5.0, calls / 10)
        ramp_s = calls / rate
        timeout_s = call_s + ramp_s + 60
        sipp = await start_sipp(
            targets, workdir, call_ms=int(call_s * 1000), rate=rate, timeout_s=timeout_s,
            sip_port=ports.sipp, media_port=ports.sipp_media,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        pss_at = loop.time() + ramp_s + 1 + max(0.0, call_s - ramp_s) / 2
        lower_priority(sipp.pid, harness_nice)
        helper_pids = {"server": server.pid, "caller": caller.pid, "sipp": sipp.pid}
        sampler = asyncio.create_task(
            _sample_until(timeline, [*pids, *helper_pids.values()], stop_sampling, pss_at)
        )
        profiler = None
        if profile is not None:
            steady_s = max(1.0, call_s - ramp_s - 4)
            profiler = asyncio.create_task(_profile(pids[0], ramp_s + 2, steady_s, profile))
        outcome = await finish_sipp(sipp, timeout_s + 30)
        if profiler is not None:
            await profiler
        stop_sampling.set()
        await sampler
        await _await_media_stats(agents, calls, 15.0)
    finally:
        stop_sampling.set()
        await caller.stop()
        await server.stop()
        await stop_agents(agents)
    return LevelRun(
        calls=calls,
        agents=agents,
        helper_pids=helper_pids,
        legs=load_legs(workdir / "caller.npz"),
        server=json.loads((workdir / "server.json").read_text())["sessions"],
        timeline=timeline,
        idle=idle,
        sipp_successful=outcome.successful,
        sipp_failed=outcome.failed,
        sipp_returncode=outcome.returncode,
        sipp_tail=outcome.output[-2000:],
        engine=engine,
        harness_nice=harness_nice,
        audio=audio,
        marker_legs=marker_legs,
    )


# -- analysis -----------------------------------------------------------------------------


def steady_window(legs: Sequence[LegRecord]) -> tuple[int, int] | None:
    """When every answered call was up: last first packet to first last packet, less margins."""
    answered = [leg for leg in legs if leg.rx_ns.size > 1]
    if not answered:
        return None
    start = max(int(leg.rx_ns[0]) for leg in answered)
    end = min(int(leg.rx_ns[-1]) for leg in answered)
    # Leave the set-up and tear-down out, but keep at least half of a short (smoke) window.
    margin = min(1_000_000_000, max(0, end - start) // 4)
    return (start + margin, end - margin) if end - start > 0 else None


def _intervals_ms(leg: LegRecord, window: tuple[int, int]) -> np.ndarray:
    inside = (leg.rx_ns >= window[0]) & (leg.rx_ns <= window[1])
    arrivals, seqs = leg.rx_ns[inside], leg.rx_seq[inside].astype(np.int64)
    if arrivals.size < 2:
        return np.zeros(0)
    consecutive = np.diff(seqs) % 65536 == 1  # a lost packet is loss, not jitter
    return np.diff(arrivals)[consecutive] / 1e6


def rfc3550_jitter_ms(intervals_ms: np.ndarray) -> np.ndarray:
    """The running interarrival jitter a receiver reports in RTCP (RFC 3550 6.4.1: J += (|D| -
    J) / 16, D the change in transit time between consecutive packets, here the arrival
    interval minus the 20 ms the RTP timestamps advance), one value per packet. Phones and
    trunks report this smoothed figure; ``jitter_ms`` is the stricter per-packet deviation."""
    estimate, out = 0.0, np.empty(intervals_ms.size)
    for i, deviation in enumerate(np.abs(intervals_ms - FRAME_NS / 1e6)):
        estimate += (float(deviation) - estimate) / 16
        out[i] = estimate
    return out


@dataclass
class _RecordedOnsets:
    """One session's tone onsets as the stream server wrote them (``latency.HasOnsets``)."""

    rate: int
    onsets: list[Onset]


def _sent_while_up(leg: LegRecord) -> int:
    # A leg talks on for a second after the agent's last packet (that is how it knows the
    # call is over): count only what it sent while the call was up.
    return int(np.count_nonzero(leg.tx_ns <= leg.rx_ns[-1])) if leg.rx_ns.size else 0


def _positions_pair(session: _RecordedOnsets, leg_index: int) -> bool:
    """Whether the session's onsets lie a whole number of marker periods apart: each caller
    frame reached the server once, so a marker's position says which one it is. A frame
    dropped or a silence filled in between moves every later onset off that grid."""
    grid = marker_period(leg_index) * session.rate * FRAME_MS // 1000
    steps = np.diff([onset.sample for onset in session.onsets])
    return bool(steps.size) and not np.any(steps % grid)


def inbound_latency(run: LevelRun, window: tuple[int, int]) -> dict[str, Any]:
    """The caller's RTP send to the server reading the append that carries it, on the marker
    legs, for the markers the server received in ``window``; and the part of it the
    resampler holds back (the rest is the jitter buffer, the media tick and the bridge).

    A marker is paired with the one the caller sent by its position in the appended audio,
    which is exact while every caller frame reaches the server once; a call where that
    failed (the agent dropped frames behind a late session) is left out and counted in
    ``inbound_untimed_calls``, since its positions no longer say which marker is which."""
    sessions = [
        _RecordedOnsets(
            int(stats.get("rate", 0)),
            [Onset(*o) for o in stats.get("onsets", []) if window[0] <= o[2] <= window[1]],
        )
        for stats in run.server
    ]
    # A steady-tone leg has one onset, where its audio starts: only marker legs pair up.
    marked = [s for s in sessions if s.rate and len(s.onsets) >= MARKER_LEG_ONSETS]
    samples: list[Sample] = []
    timed = untimed = 0
    candidates = list(run.marker_legs)
    for s_index, leg_index in pair_up(marked, run.legs, candidates) if candidates else []:
        session, leg = marked[s_index], run.legs[leg_index]
        if not _positions_pair(session, leg_index):
            untimed += 1
            continue
        timed += 1
        samples += inbound_samples(session, leg, leg_index, run.audio, False)
    total = np.array([sample.total_ms for sample in samples])
    held = np.array([sample.resampler_ms for sample in samples])
    return {
        "inbound_latency_ms": percentiles(total),
        "inbound_resampler_ms": percentiles(held),
        "inbound_timed_calls": timed,
        "inbound_untimed_calls": untimed,
    }


def _rtp_lost(leg: LegRecord) -> int:
    if leg.rx_seq.size < 2:
        return 0
    steps = np.mod(np.diff(leg.rx_seq.astype(np.int64)), 65536)
    forward = steps[(steps >= 1) & (steps < 1000)]  # larger steps are reordering
    return int(np.sum(forward - 1))


def _silent_inside(leg: LegRecord) -> int:
    """Silent packets between the first and the last audible one: the reply never pauses."""
    loud = np.flatnonzero(leg.rx_audible)
    if loud.size == 0:
        return 0
    span = leg.rx_audible[loud[0] : loud[-1] + 1]
    return int(span.size - np.count_nonzero(span))


def _cpu(run: LevelRun, window: tuple[int, int]) -> dict[str, Any]:
    pair = run.timeline.around(*window)
    if pair is None:
        return {}
    (t0, before), (t1, after) = pair
    seconds = (t1 - t0) / 1e9
    # The calls that were up in the window: those refused (503) or failed cost nothing.
    call_seconds = seconds * max(1, sum(1 for leg in run.legs if leg.rx_ns.size > 1))
    main = media = 0
    for agent in run.agents:
        pid = agent_pid(agent)
        if pid in before and pid in after:
            m, c = procstat.thread_delta_ns(before[pid], after[pid])
            main, media = main + m, media + c
    helpers = {
        name: round((after[pid].cpu_ns - before[pid].cpu_ns) / 1e6 / seconds, 1)
        for name, pid in run.helper_pids.items()
        if pid in before and pid in after
    }
    ours = {agent_pid(a) for a in run.agents} | set(run.helper_pids.values())
    others = run.timeline.others_ms_per_s(*window, ours | {os.getpid()})
    return {
        "window_s": round(seconds, 2),
        "agent_cpu_ms_per_call_s": round((main + media) / 1e6 / call_seconds, 3),
        "loop_thread_ms_per_call_s": round(main / 1e6 / call_seconds, 3),
        "media_threads_ms_per_call_s": round(media / 1e6 / call_seconds, 3),
        # Every thread but the loop's: the stack's (PJSIP: the media clock; baresip: its
        # SIP/RTP thread and per-call transmit threads). 100 frames per call-second (50 in,
        # 50 out); those threads also run RTP, jitter buffer and codecs, so this bounds a
        # frame's cost from above (bench/swig_callbacks.py measures PJSIP's callbacks alone).
        "media_us_per_callback_bound": round(media / 1e3 / (call_seconds * 100), 1),
        "agents_cpu_ms_per_s": round((main + media) / 1e6 / seconds, 1),
        "helpers_cpu_ms_per_s": helpers,
        # Whatever else ran on the machine meanwhile: these cores may be shared.
        "others_cpu_ms_per_s": None if others is None else round(others, 1),
    }


def _memory(run: LevelRun) -> dict[str, float]:
    pids = [agent_pid(a) for a in run.agents]
    middle = run.timeline.points[len(run.timeline.points) // 2][1] if run.timeline.points else {}
    rss = sum(middle[pid].rss for pid in pids if pid in middle)
    pss = sum(run.timeline.pss.get(pid, 0) for pid in pids)
    idle_rss = run.idle["rss_mb_per_process"] * len(pids) * 2**20
    return {
        "rss_mb_per_call": round(rss / run.calls / 2**20, 2),
        "pss_mb_per_call": round(pss / run.calls / 2**20, 2),
        "rss_growth_mb_per_call": round((rss - idle_rss) / run.calls / 2**20, 2),
    }


#: ``media_stats`` counters summed over a level's calls (``tx_send_errors``: baresip only).
_SUMMED = (
    "frames_in", "frames_out", "inbound_dropped", "gap_frames", "underruns", "tx_send_errors",
)  # fmt: skip


def _agent_counters(agents: Sequence[AgentProcess]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for agent in agents:
        for line in agent.events("media_stats"):
            for key in _SUMMED:
                totals[key] = totals.get(key, 0) + int(line.get(key, 0))
    return totals


def analyse(run: LevelRun) -> dict[str, Any]:
    window = steady_window(run.legs)
    answered = sum(len(a.events("call_answered")) for a in run.agents)
    rejected = sum(len(a.events("call_rejected")) for a in run.agents)
    counters = _agent_counters(run.agents)
    per_leg = [_intervals_ms(leg, window) for leg in run.legs] if window else []
    # The estimator starts from 0: its first second (three time constants) is warm-up.
    rtcp_jitter = [rfc3550_jitter_ms(leg)[50:] for leg in per_leg]
    intervals = np.concatenate(per_leg) if per_leg else np.zeros(0)
    rtp_lost = sum(_rtp_lost(leg) for leg in run.legs)
    silent = sum(_silent_inside(leg) for leg in run.legs)
    gaps = max(counters.get("gap_frames", 0), silent)
    frames_lost = counters.get("inbound_dropped", 0) + gaps + rtp_lost
    sent = sum(_sent_while_up(leg) for leg in run.legs)
    appended_frames = sum(s["appended_ms"] for s in run.server) // 20
    late: np.ndarray = (
        np.concatenate([leg.tx_late_ns for leg in run.legs]) / 1e6 if run.legs else np.zeros(0)
    )
    return {
        "engine": run.engine,
        "calls": run.calls,
        "harness_nice": run.harness_nice,
        "agents": len(run.agents),
        "answered": answered,
        "failed": max(run.sipp_failed, run.calls - run.sipp_successful),
        "rejected_503": rejected,
        "frames_lost": frames_lost,
        "inbound_dropped": counters.get("inbound_dropped", 0),
        "gap_frames_agent": counters.get("gap_frames", 0),
        # baresip: RTP sends the stack refused (the media clock sends every packet itself).
        "rtp_send_errors": counters.get("tx_send_errors", 0),
        "silent_frames_heard": silent,
        "rtp_packets_lost": rtp_lost,
        "caller_frames_sent": sent,
        "frames_appended": appended_frames,
        # Frames in flight at hang-up (jitter buffer, last batch) never reach the server.
        "inbound_not_appended_per_call": round((sent - appended_frames) / run.calls, 1),
        "empty_appends": sum(s["empty_appends"] for s in run.server),
        "jitter_ms": percentiles(np.abs(intervals - FRAME_NS / 1e6), 3),
        "rtcp_jitter_ms": percentiles(
            np.concatenate(rtcp_jitter) if rtcp_jitter else np.zeros(0), 3
        ),
        "caller_send_late_ms": percentiles(late, 3),
        **(inbound_latency(run, window) if window else {}),
        **(_cpu(run, window) if window else {}),
        **_memory(run),
        "idle": run.idle,
        "sipp_returncode": run.sipp_returncode,
    }


# -- report -------------------------------------------------------------------------------

_COLUMNS = (
    # header, row key (dotted for nested), width
    ("engine", "engine", 7),
    ("calls", "calls", 5),
    ("procs", "agents", 5),
    ("answered", "answered", 8),
    ("failed", "failed", 6),
    ("lost", "frames_lost", 5),
    ("CPU ms/call-s", "agent_cpu_ms_per_call_s", 13),
    ("loop", "loop_thread_ms_per_call_s", 6),
    ("stack", "media_threads_ms_per_call_s", 6),
    ("all agents ms/s", "agents_cpu_ms_per_s", 15),
    ("others", "others_cpu_ms_per_s", 6),
    ("RSS MB/call", "rss_mb_per_call", 11),
    ("PSS MB/call", "pss_mb_per_call", 11),
    ("jitter p50", "jitter_ms.p50", 10),
    ("p99 ms", "jitter_ms.p99", 7),
    ("RTCP jitter p99", "rtcp_jitter_ms.p99", 15),
    ("inbound p99 ms", "inbound_latency_ms.p99", 14),
)


def _get(row: dict[str, Any], key: str) -> Any:
    value: Any = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


#: Figures compared between engines at the same N: (label, row key, lower is better).
_RATIO_KEYS = (
    ("CPU per call-s", "agent_cpu_ms_per_call_s"),
    ("RSS per call", "rss_mb_per_call"),
    ("PSS per call", "pss_mb_per_call"),
    ("jitter p99", "jitter_ms.p99"),
    ("RTCP jitter p99", "rtcp_jitter_ms.p99"),
)


def ratios(rows: Sequence[dict[str, Any]], engines: Sequence[str]) -> list[dict[str, Any]]:
    """Per N run on every engine: each figure on the first engine over the same figure on the
    others (0.25 = a quarter of the other engine's cost)."""
    if len(engines) < 2:
        return []
    base = engines[0]
    by_key = {(r["engine"], r["calls"]): r for r in rows}
    found = []
    for calls in sorted({r["calls"] for r in rows}):
        mine = by_key.get((base, calls))
        if mine is None:
            continue
        for other in engines[1:]:
            theirs = by_key.get((other, calls))
            if theirs is None:
                continue
            entry: dict[str, Any] = {"calls": calls, "engines": f"{base}/{other}"}
            for _, key in _RATIO_KEYS:
                a, b = _get(mine, key), _get(theirs, key)
                entry[key] = round(a / b, 3) if a is not None and b else None
            found.append(entry)
    return found


def format_table(result: dict[str, Any]) -> str:
    lines = [" ".join(f"{h:>{w}}" for h, _, w in _COLUMNS)]
    for row in result["levels"]:
        cells = []
        for _, key, width in _COLUMNS:
            value = _get(row, key)
            text = "-" if value is None else f"{value:.3g}" if isinstance(value, float) else value
            cells.append(f"{text!s:>{width}}")
        lines.append(" ".join(cells))
    for entry in result.get("ratios", []):
        figures = ", ".join(
            f"{label} {'-' if entry[key] is None else f'{entry[key]:.2f}'}"
            for label, key in _RATIO_KEYS
        )
        lines.append(f"N={entry['calls']}, {entry['engines']}: {figures}")
    clean = result["largest_clean_calls"]
    text = ", ".join(f"{e} {n}" for e, n in clean.items()) if isinstance(clean, dict) else clean
    lines.append(
        f"largest N with 0 failed calls and 0 lost frames: {text}; "
        f"{result['call_s']:g} s calls; CPU over the window when every call was up."
    )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """CPU per call-second and outgoing jitter against N, every engine on one chart (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu_ax, jitter_ax) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    colours = {"baresip": "tab:blue", "pjsip": "tab:orange"}
    for engine in result["engines"]:
        rows = [
            r
            for r in result["levels"]
            if r["engine"] == engine and r.get("agent_cpu_ms_per_call_s") is not None
        ]
        if not rows:
            continue
        colour = colours.get(engine)
        calls = [r["calls"] for r in rows]
        for key, style, label in (
            ("agent_cpu_ms_per_call_s", "o-", "agent total"),
            ("loop_thread_ms_per_call_s", "s--", "asyncio thread"),
            ("media_threads_ms_per_call_s", "^:", "stack threads"),
        ):
            cpu_ax.plot(
                calls, [r[key] for r in rows], style, color=colour, label=f"{engine}: {label}"
            )
        jitter_ax.plot(
            calls, [r["jitter_ms"]["p50"] for r in rows], "o--", color=colour,
            label=f"{engine}: p50",
        )  # fmt: skip
        jitter_ax.plot(
            calls, [r["jitter_ms"]["p99"] for r in rows], "s-", color=colour,
            label=f"{engine}: p99",
        )  # fmt: skip
        lossy = [r for r in rows if r["frames_lost"] or r["failed"]]
        if lossy:
            jitter_ax.plot(
                [r["calls"] for r in lossy], [r["jitter_ms"]["p99"] for r in lossy], "x",
                color="red", markersize=12, label=f"{engine}: frames lost or calls failed",
            )  # fmt: skip
    cpu_ax.axhline(8.0, color="grey", linestyle=":", label="target 8 ms")
    cpu_ax.set_ylabel("agent CPU, ms per second of call")
    cpu_ax.legend(fontsize="small")
    cpu_ax.grid(True, alpha=0.3)
    jitter_ax.axhline(2.0, color="grey", linestyle=":", label="target p99 2 ms")
    jitter_ax.set_ylabel("outgoing RTP jitter, ms\n|inter-arrival - 20 ms|")
    jitter_ax.set_xlabel("concurrent calls (baresip: one process; PJSIP: 4 per process)")
    jitter_ax.set_xscale("log")
    jitter_ax.legend(fontsize="small")
    jitter_ax.grid(True, alpha=0.3)
    fig.suptitle(
        f"voice-agent capacity, {result['environment']['cpus']} CPUs, {result['audio']}, "
        f"{result['call_s']:g} s calls"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _clean(row: dict[str, Any]) -> bool:
    return row["failed"] == 0 and row["frames_lost"] == 0 and row["answered"] == row["calls"]


async def run(
    levels: Sequence[int],
    call_s: float,
    audio: AgentAudio,
    extend: bool,
    profile_dir: Path | None = None,
    engines: Sequence[str] = ("pjsip",),
    ports: Ports = Ports(),
    harness_nice: int = 0,
) -> dict[str, Any]:
    """Run each level on each engine in turn (fresh processes for each); with ``extend``,
    keep going past the listed levels while an engine's last level was clean."""
    rows: list[dict[str, Any]] = []
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    queue = list(levels)
    if extend:
        queue += [n for n in EXTRA_LEVELS if n > max(levels)]
    still_clean = dict.fromkeys(engines, True)
    for calls in queue:
        for engine in engines:
            if calls > max(levels) and not still_clean[engine]:
                continue
            with tempfile.TemporaryDirectory(prefix=f"bench-capacity-{engine}-{calls}-") as tmp:
                profile = (
                    profile_dir / f"profile-capacity-{engine}-{calls}.txt" if profile_dir else None
                )
                level = await run_level(
                    calls, call_s, Path(tmp), audio, profile, engine, ports, harness_nice
                )
            row = analyse(level)
            rows.append(row)
            still_clean[engine] = _clean(row)
            print(format_table({"levels": [row], "largest_clean_calls": "-", "call_s": call_s}))
    largest = {
        engine: max((r["calls"] for r in rows if r["engine"] == engine and _clean(r)), default=0)
        for engine in engines
    }
    return {
        "benchmark": "capacity",
        "environment": environment(),
        "call_s": call_s,
        "audio": audio.label,
        "harness_nice": harness_nice,
        "engines": list(engines),
        "calls_per_process": {e: "all" if e == "baresip" else CALLS_PER_AGENT for e in engines},
        "levels": rows,
        "ratios": ratios(rows, engines),
        "largest_clean_calls": largest,
    }


def _port_range(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    low, high = int(first), int(last or first)
    if not 1024 <= low <= high <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port range like 5300-5399")
    return low, high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engine", default=",".join(ENGINES),
        help="SIP engines, comma-separated, run side by side (default baresip,pjsip)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="N=2, 3 s calls (smoke run)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument(
        "--levels", help="comma-separated N (default 10,50,100,150,200, then more while clean)"
    )
    parser.add_argument("--call-s", type=float, default=30.0, help="length of each call")
    parser.add_argument("--quality", default="LQ", help="the agents' soxr resampler quality")
    parser.add_argument("--batch-ms", type=int, default=20, help="the agents' append batch")
    parser.add_argument("--passthrough", action="store_true", help="G.711 passthrough sessions")
    parser.add_argument(
        "--loop-nice", type=int, default=-10, help="the agents' audio.loop_nice (0: off)"
    )
    parser.add_argument(
        "--max-loop-busy", type=float, default=1.0,
        help="the agents' sip.max_loop_busy (default 1.0: off, to measure what the engine "
        "carries; the agent's own default is 0.9)",
    )  # fmt: skip
    parser.add_argument(
        "--sip-ports", type=_port_range,
        help="SIP ports for the agents and SIPp, e.g. 5300-5399 (default: free ports)",
    )  # fmt: skip
    parser.add_argument(
        "--rtp-ports", type=_port_range,
        help=f"the agents' RTP ports, e.g. 30000-31999 (default from {RTP_BASE_PORT})",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=Path, help="directory for py-spy profiles of one agent per level"
    )
    parser.add_argument(
        "--harness-nice", type=int, default=0, choices=range(20), metavar="0-19",
        help="niceness of the stream server, caller and SIPp (default 0: the agents' equals); "
        "10 gives the agents first claim on the cores, as when the callers and the model "
        "are other machines",
    )  # fmt: skip
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        parser.error(f"--engine: {', '.join(unknown) or '(none)'}; use {' or '.join(ENGINES)}")
    if args.quick:
        levels, call_s, extend = [2], 3.0, False
    elif args.levels:
        levels, call_s, extend = [int(n) for n in args.levels.split(",")], args.call_s, False
    else:
        levels, call_s, extend = list(DEFAULT_LEVELS), args.call_s, True
    sip = tuple(range(args.sip_ports[0], args.sip_ports[1] + 1)) if args.sip_ports else None
    ports = (
        # SIPp's (unused) media ports at the top of the range, the agents' from its bottom.
        Ports(sip, args.rtp_ports[0], (args.rtp_ports[1] - 3) // 2 * 2)
        if args.rtp_ports
        else Ports(sip)
    )
    if args.rtp_ports:
        needed = max(
            math.ceil(n / (per := calls_per_process(e, n))) * rtp_ports_per_process(e, per)
            for n in levels
            for e in engines
        )
        if args.rtp_ports[1] - args.rtp_ports[0] + 1 < needed:
            parser.error(f"--rtp-ports: the largest level needs {needed} ports")
    audio = AgentAudio(
        args.quality, args.passthrough, args.batch_ms, args.loop_nice, args.max_loop_busy
    )
    result = asyncio.run(
        run(levels, call_s, audio, extend, args.profile, engines, ports, args.harness_nice)
    )
    print()
    print(format_table(result))
    write_json(result, args.json)
    print(f"wrote {args.json}")
    if not args.quick:
        # Next to the JSON, same name: capacity.json -> capacity.png.
        png = args.json.with_suffix(".png")
        plot(result, png)
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
