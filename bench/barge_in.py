"""Barge-in benchmark: how fast agent audio stops, and how exactly the truncate says what was heard.

Usage: uv run python bench/barge_in.py [--quick] [--json PATH] [--interruptions 60] [--calls 3]

The realtime server (bench/stream_server.py, in this process) streams a long tone reply on
each call, ahead of real time like the real API. After a random 0.5-1.5 s of it, the server
plays the caller starting to talk the way the real API does with ``interrupt_response``:
``input_audio_buffer.speech_started``, then the reply is cancelled. The agent must stop its
audio and send ``conversation.item.truncate``; after a short pause a new reply starts, and is
interrupted again. Per interruption:

- stop: the caller's kernel receive time of the last agent audio packet of that reply minus
  the time the server wrote ``speech_started`` (the agent reads it a few tens of us later).
  Negative is normal: the last packet left before the event arrived, at the agent's previous
  20 ms media tick; positive means audio kept going after the event;
- truncate error: |``audio_end_ms`` - what the caller heard of that reply|, the heard audio
  counted sample by sample in the RTP the caller received (8 kHz).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import (
    RESULTS,
    AgentAudio,
    Child,
    environment,
    finish_sipp,
    percentiles,
    start_agents,
    start_sipp,
    stop_agents,
    write_json,
)
from bench.rtp_caller import FRAME_SAMPLES, LegRecord, load_legs
from bench.stream_server import BenchServer, BenchSession, Reply

DEFAULT_JSON = RESULTS / "barge_in.json"
#: How long a reply plays before the interruption: random, so cuts land anywhere in a frame.
HEARD_BEFORE_CUT_S = (0.5, 1.5)
#: Pause between the cut and the next reply; the caller's audio of two replies never touches.
PAUSE_S = 0.4
#: Replies are long enough never to end on their own before the cut.
REPLY = Reply.steady(seconds=10.0)
_RATE = 8000
_NS = 1_000_000_000


@dataclass
class Interruption:
    """One cut as measured: stop latency and the truncate against what the caller heard."""

    stop_ms: float
    audio_end_ms: int
    heard_ms: float

    @property
    def error_ms(self) -> float:
        return abs(self.audio_end_ms - self.heard_ms)


async def _drive(session: BenchSession, count: int, rng: random.Random) -> None:
    """Let each reply play a while, interrupt it, wait for the truncate, start the next."""
    await asyncio.wait_for(_first_reply(session), 20)
    for done in range(1, count + 1):
        await asyncio.sleep(rng.uniform(*HEARD_BEFORE_CUT_S))
        session.truncated.clear()
        await session.interrupt()
        await asyncio.wait_for(session.truncated.wait(), 5)
        if done < count:
            await asyncio.sleep(PAUSE_S)
            await session.start_response(REPLY)


async def _first_reply(session: BenchSession) -> None:
    # The agent's greeting (response.create) starts the first reply.
    while not session.responses:
        await asyncio.sleep(0.01)


async def _drive_all(server: BenchServer, calls: int, per_call: int, seed: int) -> None:
    drivers = []
    rng = random.Random(seed)
    for index in range(calls):
        while len(server.sessions) <= index:
            await asyncio.wait_for(server.new_session.wait(), 30)
            server.new_session.clear()
        session = server.sessions[index]
        drivers.append(asyncio.create_task(_drive(session, per_call, random.Random(rng.random()))))
    await asyncio.gather(*drivers)


# -- analysis -----------------------------------------------------------------------------


def _bursts(leg: LegRecord) -> list[tuple[int, int]]:
    """(first, last) packet index of each run of agent audio, split at 100 ms of silence."""
    loud = np.flatnonzero(leg.rx_audible)
    if loud.size == 0:
        return []
    splits = np.flatnonzero(np.diff(leg.rx_ns[loud]) > _NS // 10) + 1
    return [(int(run[0]), int(run[-1])) for run in np.split(loud, splits)]


def _heard_ms(pcm: np.ndarray, first: int, last: int) -> float:
    """Audio of one reply: first to last non-zero sample of its packets (the tone has none)."""
    span = pcm[first * FRAME_SAMPLES : (last + 1) * FRAME_SAMPLES]
    nonzero = np.flatnonzero(span)
    return 0.0 if nonzero.size == 0 else (nonzero[-1] - nonzero[0] + 1) * 1000 / _RATE


def _match(session: BenchSession, legs: Sequence[LegRecord]) -> LegRecord | None:
    """The leg whose audio runs end where this session's interruptions were."""
    cuts = np.array(session.interrupts_ns, dtype=np.int64)
    best, best_score = None, float("inf")
    for leg in legs:
        ends = np.array([leg.rx_ns[last] for _, last in _bursts(leg)], dtype=np.int64)
        if ends.size == 0 or cuts.size == 0:
            continue
        score = float(np.median([np.min(np.abs(ends - cut)) for cut in cuts]))
        if score < best_score:
            best, best_score = leg, score
    return best


def measure(session: BenchSession, leg: LegRecord) -> list[Interruption]:
    pcm = leg.rx_pcm()
    bursts = _bursts(leg)
    results = []
    for cut_ns, truncate in zip(session.interrupts_ns, session.truncates, strict=False):
        # The reply cut here is the last run of audio that began before the cut.
        started = [b for b in bursts if leg.rx_ns[b[0]] < cut_ns]
        if not started:
            continue
        first, last = started[-1]
        stop_ms = (int(leg.rx_ns[last]) - cut_ns) / 1e6
        results.append(Interruption(stop_ms, truncate.audio_end_ms, _heard_ms(pcm, first, last)))
    return results


async def run(
    interruptions: int, calls: int, audio: AgentAudio, seed: int, engine: str = "pjsip"
) -> dict[str, Any]:
    per_call = -(-interruptions // calls)
    call_s = per_call * (max(HEARD_BEFORE_CUT_S) + PAUSE_S + 0.3) + 6
    server = BenchServer(REPLY)
    await server.start()
    with tempfile.TemporaryDirectory(prefix="bench-barge-in-") as tmp:
        workdir = Path(tmp)
        caller = await Child.start(
            "bench.rtp_caller", "--legs", str(calls), "--pattern", "silence", "--keep-audio",
            "--out", str(workdir / "caller.npz"), "--max-seconds", str(call_s + 120),
        )  # fmt: skip
        agents = []
        try:
            agents = await start_agents(
                1, server.url, workdir, audio, engine=engine, max_calls=max(calls, 4)
            )
            targets = [(agents[0].sip_port, port) for port in caller.ready["ports"]]
            sipp = await start_sipp(
                targets, workdir, call_ms=int(call_s * 1000), rate=5, timeout_s=call_s + 60
            )
            await _drive_all(server, calls, per_call, seed)
            outcome = await finish_sipp(sipp, call_s + 90)
        finally:
            await caller.stop()
            await stop_agents(agents)
            await server.stop()
        legs = load_legs(workdir / "caller.npz")
    measured: list[Interruption] = []
    for session in server.sessions:
        leg = _match(session, legs)
        if leg is not None:
            measured += measure(session, leg)
    return {
        "benchmark": "barge_in",
        "environment": environment(),
        "audio": audio.label,
        "calls": calls,
        "calls_failed": outcome.failed,
        "interruptions_requested": per_call * calls,
        "interruptions_measured": len(measured),
        "truncates_received": sum(len(s.truncates) for s in server.sessions),
        "stop_ms": percentiles([m.stop_ms for m in measured]),
        "truncate_error_ms": percentiles([m.error_ms for m in measured]),
        "heard_ms": percentiles([m.heard_ms for m in measured]),
    }


def format_table(result: dict[str, Any]) -> str:
    stop, error = result["stop_ms"], result["truncate_error_ms"]
    return "\n".join(
        [
            f"{result['interruptions_measured']} interruptions on {result['calls']} calls "
            f"({result['audio']}), {result['truncates_received']} truncates received",
            "                                            p50      p99      max",
            f"event written -> last agent RTP (ms)   {_ms(stop['p50'])} {_ms(stop['p99'])} "
            f"{_ms(stop['max'])}",
            f"|audio_end_ms - heard ms|              {_ms(error['p50'])} {_ms(error['p99'])} "
            f"{_ms(error['max'])}",
            "negative stop = the last packet left at the media tick before the event arrived",
        ]
    )


def _ms(value: float | None) -> str:
    return f"{'-':>8}" if value is None else f"{value:>8.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 interruptions on 1 call")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--interruptions", type=int, default=60, help="in total (>= 50)")
    parser.add_argument("--engine", choices=("baresip", "pjsip"), default="pjsip")
    parser.add_argument("--calls", type=int, default=3, help="concurrent calls (PJSIP: <= 4)")
    parser.add_argument("--seed", type=int, default=1, help="of the random cut points")
    args = parser.parse_args(argv)
    interruptions, calls = (2, 1) if args.quick else (args.interruptions, args.calls)
    result = asyncio.run(run(interruptions, calls, AgentAudio(), args.seed, args.engine))
    print(format_table(result))
    write_json(result, args.json)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
