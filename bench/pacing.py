"""Media pacing on the baresip engine: one beat for every call (from a kernel timer or from
the loop's timers), or one asyncio task per call.

Usage: uv run python bench/pacing.py [--quick] [--json PATH] [--levels 10,50,150] [--seconds 10]
       [--loop uvloop|asyncio]

baresip-python never calls back per frame, so the engine paces each call's audio itself
(agent/sip/baresip/media.py). Each way is run here over the engine's own ``AudioPump`` (the
code that moves one call's frames each tick), fed by an in-memory stand-in for
``call.audio`` that always has one frame to read and takes every frame written, so what
differs is the pacing alone:

- ``kernel``: the engine's ``MediaClock`` on its default beat, a Linux ``timerfd``
  (``agent/audio/metronome.py``);
- ``loop``: the same clock on the loop's own timers (``call_at`` at absolute deadlines);
- ``tasks``: one asyncio task per call sleeping to its own absolute 20 ms deadlines.

Per N: CPU of this process per call-second (the loop does nothing else) and the beat's
jitter, |interval - 20 ms| between consecutive ticks of each of the clock's phases (its
calls are spread over four, 5 ms apart), or between a task's wake-ups:
what a caller's jitter buffer sees of the pacing, before any other work on the loop. The
loop is uvloop's, as ``voice-agent serve`` runs (``--loop asyncio`` for asyncio's own).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

from agent.audio.metronome import KernelTimer, LoopTimer, Metronome, OnBeats
from agent.audio.pcm import frame_bytes
from agent.sip.baresip.media import TICK_S, AudioPump, MediaClock
from bench.harness import RESULTS, environment, percentiles, write_json

DEFAULT_JSON = RESULTS / "pacing.json"
RATE = 8000
MODES = ("kernel", "loop", "tasks")
LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


class _Audio:
    """``call.audio`` as the pump sees it: a frame to read each tick, writes all taken."""

    def __init__(self) -> None:
        self._frame = bytes(frame_bytes(RATE))
        self.written = 0

    def read(self, _max_bytes: int) -> bytes:
        return self._frame

    def write(self, frame: bytes) -> int:
        self.written += 1
        return len(frame)

    def ready(self) -> bool:
        return True

    def drop_pending(self) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return {}


class _Stamped:
    """A metronome that notes when each of its beats reached the clock (a call covering
    several beats, after a stall, stamps each of them)."""

    def __init__(self, inner: Metronome, stamps: list[float]) -> None:
        self.name = inner.name
        self._inner = inner
        self._stamps = stamps

    def start(self, loop: asyncio.AbstractEventLoop, on_beats: OnBeats) -> None:
        stamps = self._stamps

        def stamped(beats: int) -> None:
            stamps.extend([time.monotonic()] * beats)
            on_beats(beats)

        self._inner.start(loop, stamped)

    def stop(self) -> None:
        self._inner.stop()


def _pumps(calls: int) -> list[AudioPump]:
    pumps = []
    for _ in range(calls):
        pump = AudioPump(_Audio(), RATE, lambda: None)
        pumps.append(pump)
    return pumps


async def _clock(
    timer: type[KernelTimer] | type[LoopTimer], calls: int, seconds: float
) -> list[float]:
    loop = asyncio.get_running_loop()
    stamps: list[float] = []
    clock = MediaClock(lambda period: _Stamped(timer(period), stamps), idle=None)
    for index, pump in enumerate(_pumps(calls)):
        pump.on_frames = pump.take_frames
        clock.add(str(index), pump)
    clock.start(loop)
    await asyncio.sleep(seconds)
    clock.stop()
    # Each phase's beats are its calls' ticks, 20 ms apart.
    phases = len(clock.phases)
    return _jitter_ms([stamps[phase::phases] for phase in range(phases)])


def _jitter_ms(wakeups: list[list[float]]) -> list[float]:
    """|interval - 20 ms| between consecutive wake-ups of each sequence, in ms."""
    out: list[float] = []
    for stamps in wakeups:
        out.extend(np.abs(np.diff(np.array(stamps)) - TICK_S) * 1000)
    return out


async def _tasks(calls: int, seconds: float) -> list[float]:
    loop = asyncio.get_running_loop()
    wakeups: list[list[float]] = [[] for _ in range(calls)]
    end = loop.time() + seconds

    async def one(pump: AudioPump, offset: float, stamps: list[float]) -> None:
        deadline = loop.time() + offset
        while deadline < end:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            stamps.append(time.monotonic())
            pump.send(1)
            pump.receive()
            pump.take_frames()
            deadline += TICK_S

    # Calls start at random moments, so their deadlines spread over the 20 ms.
    offsets = np.random.default_rng(1).uniform(0, TICK_S, calls)
    await asyncio.gather(
        *(one(p, float(o), w) for p, o, w in zip(_pumps(calls), offsets, wakeups, strict=True))
    )
    return _jitter_ms(wakeups)


async def measure(mode: str, calls: int, seconds: float) -> dict[str, Any]:
    cpu0, wall0 = time.process_time(), time.monotonic()
    if mode == "tasks":
        jitter = await _tasks(calls, seconds)
    else:
        jitter = await _clock(KernelTimer if mode == "kernel" else LoopTimer, calls, seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    return {
        "mode": mode,
        "calls": calls,
        "cpu_ms_per_call_s": round(cpu * 1000 / (wall * calls), 4),
        "cpu_ms_per_s": round(cpu * 1000 / wall, 1),
        "jitter_ms": percentiles(jitter, 3),
    }


async def run(levels: list[int], seconds: float, loop: str) -> dict[str, Any]:
    modes = [m for m in MODES if m != "kernel" or KernelTimer.available()]
    rows = []
    for calls in levels:
        for mode in modes:
            rows.append(await measure(mode, calls, seconds))
    return {
        "benchmark": "pacing",
        "environment": environment(),
        "loop": loop,
        "seconds": seconds,
        "rows": rows,
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'calls':>5} {'mode':>7} {'CPU ms/call-s':>13} {'loop ms/s':>9} "
             f"{'jitter p50':>10} {'p99':>6} {'max ms':>7}"]  # fmt: skip
    by_level: dict[int, dict[str, Any]] = {}
    for row in result["rows"]:
        jitter = row["jitter_ms"]
        by_level.setdefault(row["calls"], {})[row["mode"]] = row
        lines.append(
            f"{row['calls']:>5} {row['mode']:>7} {row['cpu_ms_per_call_s']:>13.3f} "
            f"{row['cpu_ms_per_s']:>9.1f} {jitter['p50']:>10.3f} {jitter['p99']:>6.3f} "
            f"{jitter['max']:>7.3f}"
        )
    lines.append("ratios against the loop-timer clock (CPU, jitter p99):")
    for calls, modes in by_level.items():
        base = modes.get("loop")
        if base is None:
            continue
        parts = [
            f"{mode} {row['cpu_ms_per_call_s'] / base['cpu_ms_per_call_s']:.2f}, "
            f"{row['jitter_ms']['p99'] / max(base['jitter_ms']['p99'], 1e-9):.2f}"
            for mode, row in modes.items()
            if mode != "loop"
        ]
        lines.append(f"{calls:>5}: " + "; ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=10 for 1 s (smoke run)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--levels", default="10,50,150", help="comma-separated N")
    parser.add_argument("--seconds", type=float, default=10.0, help="per mode and level")
    parser.add_argument("--loop", choices=LOOPS, default="uvloop", help="the event loop")
    args = parser.parse_args(argv)
    if args.quick:
        levels, seconds = [10], 1.0
    else:
        levels, seconds = [int(n) for n in args.levels.split(",")], args.seconds
    with asyncio.Runner(loop_factory=LOOPS[args.loop]) as runner:
        result = runner.run(run(levels, seconds, args.loop))
    print(format_table(result))
    write_json(result, args.json)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
