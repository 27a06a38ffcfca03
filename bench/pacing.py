"""Media pacing on the baresip engine: one ticker for every call, or one asyncio task per call.

Usage: uv run python bench/pacing.py [--quick] [--json PATH] [--levels 10,50,150] [--seconds 10]

baresip-python never calls back per frame, so the engine paces each call's audio itself
(agent/sip/baresip/media.py). Both ways are run here over the engine's own ``AudioPump`` (the
code that moves one call's frames each tick), fed by an in-memory stand-in for
``call.audio`` that always has one frame to read and takes every frame written, so what
differs is the pacing alone:

- ``ticker``: the engine's ``MediaClock``, one loop timer every 20 ms serving every pump;
- ``tasks``: one asyncio task per call sleeping to its own absolute 20 ms deadlines.

Per N: CPU of this process per call-second (the loop does nothing else) and how late the
ticks ran (p50/p99 of the lateness of each wake-up against its deadline).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.audio.pcm import frame_bytes
from agent.sip.baresip.media import TICK_S, AudioPump, MediaClock
from bench.harness import RESULTS, environment, percentiles, write_json

DEFAULT_JSON = RESULTS / "pacing.json"
RATE = 8000


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


def _pumps(calls: int) -> list[AudioPump]:
    pumps = []
    for _ in range(calls):
        pump = AudioPump(_Audio(), RATE, lambda: None)
        pumps.append(pump)
    return pumps


async def _ticker(calls: int, seconds: float) -> list[float]:
    loop = asyncio.get_running_loop()
    clock = MediaClock()
    lateness: list[float] = []
    for index, pump in enumerate(_pumps(calls)):
        clock.pumps[str(index)] = pump
    original = clock._tick

    def measured() -> None:
        lateness.append(loop.time() - clock._next)
        original()
        for pump in clock.pumps.values():
            pump.take_frames()

    clock._tick = measured  # type: ignore[method-assign]
    clock.start(loop)
    await asyncio.sleep(seconds)
    clock.stop()
    return lateness


async def _tasks(calls: int, seconds: float) -> list[float]:
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    end = loop.time() + seconds

    async def one(pump: AudioPump, offset: float) -> None:
        deadline = loop.time() + offset
        while deadline < end:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            lateness.append(loop.time() - deadline)
            pump.send(1)
            pump.receive()
            pump.take_frames()
            deadline += TICK_S

    # Calls start at random moments, so their deadlines spread over the 20 ms.
    offsets = np.random.default_rng(1).uniform(0, TICK_S, calls)
    await asyncio.gather(*(one(p, float(o)) for p, o in zip(_pumps(calls), offsets, strict=True)))
    return lateness


async def measure(mode: str, calls: int, seconds: float) -> dict[str, Any]:
    run = _ticker if mode == "ticker" else _tasks
    cpu0, wall0 = time.process_time(), time.monotonic()
    lateness = await run(calls, seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    return {
        "mode": mode,
        "calls": calls,
        "cpu_ms_per_call_s": round(cpu * 1000 / (wall * calls), 4),
        "cpu_ms_per_s": round(cpu * 1000 / wall, 1),
        "late_ms": percentiles(np.array(lateness) * 1000, 3),
    }


async def run(levels: list[int], seconds: float) -> dict[str, Any]:
    rows = []
    for calls in levels:
        for mode in ("ticker", "tasks"):
            rows.append(await measure(mode, calls, seconds))
    return {"benchmark": "pacing", "environment": environment(), "seconds": seconds, "rows": rows}


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'calls':>5} {'mode':>7} {'CPU ms/call-s':>13} {'loop ms/s':>9} {'late p50':>8} "
             f"{'p99 ms':>7}"]  # fmt: skip
    for row in result["rows"]:
        late = row["late_ms"]
        lines.append(
            f"{row['calls']:>5} {row['mode']:>7} {row['cpu_ms_per_call_s']:>13.3f} "
            f"{row['cpu_ms_per_s']:>9.1f} {late['p50']:>8.3f} {late['p99']:>7.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=10 for 1 s (smoke run)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--levels", default="10,50,150", help="comma-separated N")
    parser.add_argument("--seconds", type=float, default=10.0, help="per mode and level")
    args = parser.parse_args(argv)
    if args.quick:
        levels, seconds = [10], 1.0
    else:
        levels, seconds = [int(n) for n in args.levels.split(",")], args.seconds
    result = asyncio.run(run(levels, seconds))
    print(format_table(result))
    write_json(result, args.json)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
