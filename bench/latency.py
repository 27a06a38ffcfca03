"""Latency benchmark: the time the agent adds to each direction of a call's audio, per frame.

Usage: uv run python bench/latency.py [--quick] [--json PATH] [--calls 3] [--call-s 30]
       [--transport websocket,webrtc] [--engine baresip,pjsip] [--protocol realtime|live]

``--transport`` runs each audio mode over each transport, and ``--engine`` on each SIP
engine, side by side in one run. Over
WebRTC (bench/webrtc_server.py) the server's "sent" is the moment a marker's first frame left
its media track, and "read" the moment the caller's frame came off the server's track; the
agent's Opus encode/decode, jitter buffer and the 8 kHz <-> 48 kHz resamplers count as the
agent's. G.711 passthrough is WebSocket-only. CPU per call-second is the agent process's
CPU time over the calls' total duration.

``--protocol live`` runs the same markers over GPT-Live (the bench server speaks its events;
over WebRTC it creates the session from the JSON request at ``/v1/live/sessions``). A Live
session over WebSocket always takes the call's own G.711 (no resampler, whatever the audio
mode), so it runs in the passthrough mode only, and over WebRTC in the resampled ones.

Inbound (caller -> model): the caller (bench/rtp_caller.py, ``markers``) sends silence with a
20 ms tone frame every 100 ms; the realtime server (bench/stream_server.py, in this process)
finds each tone onset in the appended audio. Latency = the server reading the append that
carries the onset - the caller sending that RTP packet. Both are CLOCK_MONOTONIC on one
machine over loopback, so this is RTP arrival at the agent -> append written by the agent,
plus a few tens of microseconds of loopback and WebSocket parsing.

Outbound (model -> caller): the server sends a 140 ms delta (40 ms of tone, then silence)
about every 200 ms, so each one lands on an empty playout buffer. Latency = the caller's kernel
receive time of the RTP packet carrying the onset - the server writing the delta.

Each figure is split into the resampler's part and the rest. soxr's output count does not
depend on the signal, so replaying the same frames (or deltas) through a fresh stream of the
same quality says exactly how many 20 ms frames later the onset came out of the resampler;
the rest is the bridge (PJSIP's jitter buffer, the media clock's phase, the hand-off to the
event loop, the WebSocket write). With G.711 passthrough there is no resampler.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.audio.resample import StreamResampler, measure_holdback
from agent.config import SIP_ENGINES, SipSettings
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
from bench.procstat import sample as proc_sample
from bench.rtp_caller import FRAME_MS, FRAME_SAMPLES, LegRecord, load_legs, marker_period
from bench.stream_server import (
    ONSET_LEVEL,
    ONSET_QUIET_MS,
    BenchServer,
    BenchSession,
    Onset,
    Reply,
)

DEFAULT_JSON = RESULTS / "latency.json"
#: Outbound marker deltas: session i sends one every 203 + 20 i ms. The spacing tells sessions
#: apart at the caller (its legs are not otherwise tied to sessions), and the odd 3 ms moves
#: each delta to another phase of the agent's 20 ms media clock.
_DELTA_PERIOD_MS = 203
_DELTA_PERIOD_STEP_MS = 20
_SIP_RATE = 8000
#: The caller's clock runs this much slow, so its frames sweep every phase of the agent's
#: 20 ms media clock (a full sweep every 20 s): waiting for the next tick is part of the
#: latency, 0 to 20 ms depending on that phase.
_CALLER_SKEW_PPM = 1000


def _delta_period_ms(session_index: int) -> int:
    return _DELTA_PERIOD_MS + _DELTA_PERIOD_STEP_MS * session_index


def _marker_reply(session_index: int, call_s: float) -> Reply:
    period = _delta_period_ms(session_index)
    # 40 ms of tone, then 100 ms of silence: more than any quality up to MQ holds back, so a
    # delta's tone always leaves the resampler with that delta, never with the next one.
    return Reply.markers(
        count=int(call_s * 1000 // period) + 10, tone_ms=40, chunk_ms=140, period_ms=period
    )


@dataclass
class Sample:
    """One marker's latency and the part of it the resampler accounts for."""

    total_ms: float
    resampler_ms: float


# -- inbound ------------------------------------------------------------------------------


def _input_counts(audio: AgentAudio, frames: int, model_rate: int) -> np.ndarray:
    """Samples the agent has appended after each of its first ``frames`` 20 ms frames."""
    if audio.passthrough:
        return np.arange(1, frames + 1) * FRAME_SAMPLES
    stream = StreamResampler(_SIP_RATE, model_rate, audio.quality)
    silence = bytes(FRAME_SAMPLES * 2)
    counts = np.empty(frames, dtype=np.int64)
    total = 0
    for i in range(frames):
        total += len(stream.process(silence)) // 2
        counts[i] = total
    return counts


class HasOnsets(Protocol):
    """The tone onsets a server found in one session's appended audio (a live
    ``BenchSession``, or one read back from the stream server's output)."""

    @property
    def rate(self) -> int: ...

    @property
    def onsets(self) -> Sequence[Onset]: ...


def inbound_samples(
    session: HasOnsets, leg: LegRecord, leg_index: int, audio: AgentAudio, by_time: bool
) -> list[Sample]:
    """Each onset's latency. ``by_time`` pairs an onset with the last marker sent before it
    arrived: over WebRTC the agent's track pads the caller's audio with silence on its own
    clock, so positions in the server's audio drift from the caller's frames (the markers
    are 100 ms or more apart, far more than any latency, so the pairing is unambiguous)."""
    onsets = session.onsets
    if not onsets:
        return []
    period = marker_period(leg_index)
    frame = session.rate * FRAME_MS // 1000
    markers_sent = leg.tx_ns[::period]
    # The first onset belongs to the last marker sent before it arrived; the rest follow by
    # their position in the appended audio (a lost marker cannot shift the pairing).
    first = int(np.searchsorted(markers_sent, onsets[0].received_ns)) - 1
    counts = _input_counts(audio, onsets[-1].append_end // frame + 50, session.rate)
    samples = []
    for onset in onsets:
        if by_time:
            index = int(np.searchsorted(markers_sent, onset.received_ns)) - 1
        else:
            index = first + round((onset.sample - onsets[0].sample) / (period * frame))
        if not 0 <= index < markers_sent.size:
            continue
        total = (onset.received_ns - int(markers_sent[index])) / 1e6
        # The append was sent right after the agent's frame number `emitted` (0-based); the
        # onset's own frame is `own`: the difference is how long the resampler held it.
        emitted = int(np.searchsorted(counts, onset.append_end))
        own = onset.sample // frame
        samples.append(Sample(total, max(0, emitted - own) * FRAME_MS))
    return samples


# -- outbound -----------------------------------------------------------------------------


def _caller_onsets(leg: LegRecord) -> list[int]:
    """Indexes of received packets that carry a tone onset (after >= 30 ms of quiet)."""
    pcm = np.abs(leg.rx_pcm().astype(np.int32))
    loud = np.flatnonzero(pcm >= ONSET_LEVEL)
    if loud.size == 0:
        return []
    quiet = _SIP_RATE * ONSET_QUIET_MS // 1000
    starts = loud[np.concatenate(([True], np.diff(loud) > quiet))]
    return [int(s) // FRAME_SAMPLES for s in starts]


def _output_delay_frames(
    audio: AgentAudio, reply: Reply, deltas: int, model_rate: int
) -> list[int]:
    """For each marker delta, the 20 ms frames of held-back audio played before its onset."""
    if audio.passthrough:
        return [0] * deltas
    stream = StreamResampler(model_rate, _SIP_RATE, audio.quality)
    chunk = reply.chunk
    if model_rate != 24000:
        # The WebRTC bench server repeats each 24 kHz sample onto its 48 kHz track.
        chunk = np.repeat(np.frombuffer(chunk, dtype="<i2"), model_rate // 24000).tobytes()
    delays = []
    for _ in range(deltas):
        out = np.abs(np.frombuffer(stream.process(chunk), dtype="<i2").astype(np.int32))
        loud = np.flatnonzero(out >= ONSET_LEVEL)
        if loud.size == 0:
            raise ValueError(f"soxr {audio.quality} held back a whole marker tone")
        delays.append(int(loud[0]) // FRAME_SAMPLES)
    return delays


def _outbound_samples(session: BenchSession, leg: LegRecord, audio: AgentAudio) -> list[Sample]:
    sent = np.array([d.sent_ns for d in session.sent], dtype=np.int64)
    if sent.size == 0:
        return []
    delays = _output_delay_frames(audio, session.default_reply, sent.size, session.rate)
    samples = []
    for packet in _caller_onsets(leg):
        arrival = int(leg.rx_ns[packet])
        index = int(np.searchsorted(sent, arrival)) - 1  # the last delta written before it
        if index < 0:
            continue
        samples.append(Sample((arrival - int(sent[index])) / 1e6, delays[index] * FRAME_MS))
    return samples


# -- pairing legs and sessions ------------------------------------------------------------


def _median_step(values: Sequence[int]) -> float:
    return float(np.median(np.diff(values))) if len(values) > 1 else 0.0


def pair_up(
    sessions: Sequence[HasOnsets], legs: Sequence[LegRecord], candidates: Sequence[int] = ()
) -> list[tuple[int, int]]:
    """(session, leg) index pairs, told apart by each one's marker period; ``candidates``:
    the indexes of the legs that sent markers (default: all)."""
    indexes = list(candidates) or list(range(len(legs)))
    pairs = []
    for s_index, session in enumerate(sessions):
        frame = session.rate * FRAME_MS // 1000
        step = _median_step([o.sample for o in session.onsets]) / frame  # in frames
        if step == 0:
            continue
        leg_index = min(indexes, key=lambda i: abs(marker_period(i) - step))
        pairs.append((s_index, leg_index))
    return pairs


def _summary(samples: Sequence[Sample]) -> dict[str, Any]:
    total = np.array([s.total_ms for s in samples])
    resampler = np.array([s.resampler_ms for s in samples])
    return {
        "total_ms": percentiles(total),
        "resampler_ms": percentiles(resampler),
        "bridge_ms": percentiles(total - resampler),
    }


async def run_mode(
    audio: AgentAudio,
    calls: int,
    call_s: float,
    workdir: Path,
    engine: str = "pjsip",
    transport: str = "websocket",
    protocol: str = "realtime",
) -> dict[str, Any]:
    """One agent, ``calls`` concurrent calls with markers both ways; latency per marker."""
    replies = lambda index: _marker_reply(index, call_s)  # noqa: E731
    extra: list[str] = ["--protocol", protocol]
    if transport == "webrtc":
        from bench.webrtc_server import WebRtcBenchServer

        rtc = WebRtcBenchServer(replies, markers=True, protocol=protocol)
        server: BenchServer = rtc
        await server.start()
        calls_url = rtc.live_calls_url if protocol == "live" else rtc.calls_url
        extra += ["--transport", "webrtc", "--webrtc-url", calls_url]
    else:
        server = BenchServer(replies, markers=True, protocol=protocol)
        await server.start()
    caller = await Child.start(
        "bench.rtp_caller", "--legs", str(calls), "--pattern", "markers", "--keep-audio",
        "--skew-ppm", str(_CALLER_SKEW_PPM),
        "--out", str(workdir / "caller.npz"), "--max-seconds", str(call_s + 120),
    )  # fmt: skip
    agents = []
    try:
        agents = await start_agents(
            1, server.url, workdir, audio, engine=engine, max_calls=max(calls, 4), extra_args=extra
        )
        targets = [(agents[0].sip_port, port) for port in caller.ready["ports"]]
        pid = agents[0].proc.pid if agents[0].proc is not None else 0
        before = proc_sample(pid)
        sipp = await start_sipp(
            targets, workdir, call_ms=int(call_s * 1000), rate=5, timeout_s=call_s + 60
        )
        outcome = await finish_sipp(sipp, call_s + 90)
        after = proc_sample(pid)
    finally:
        await caller.stop()
        await stop_agents(agents)
        await server.stop()
    legs = load_legs(workdir / "caller.npz")
    inbound: list[Sample] = []
    outbound: list[Sample] = []
    for s_index, leg_index in pair_up(server.sessions, legs):
        session, leg = server.sessions[s_index], legs[leg_index]
        inbound += inbound_samples(session, leg, leg_index, audio, transport == "webrtc")
        outbound += _outbound_samples(session, leg, audio)
    cpu_per_call_s = None
    if before is not None and after is not None:
        cpu_s = (after.cpu_ns - before.cpu_ns) / 1e9
        cpu_per_call_s = round(cpu_s / (calls * call_s), 4)
    row: dict[str, Any] = {
        "engine": engine,
        "audio": audio.label,
        "protocol": protocol,
        "transport": transport,
        "cpu_s_per_call_s": cpu_per_call_s,
        "calls": calls,
        "calls_failed": outcome.failed,
        "inbound": _summary(inbound),
        "outbound": _summary(outbound),
    }
    if not audio.passthrough:
        model_rate = 48000 if transport == "webrtc" else 24000
        held = measure_holdback(_SIP_RATE, model_rate, audio.quality)
        held_down = measure_holdback(model_rate, _SIP_RATE, audio.quality)
        row["resampler_holdback_ms"] = {
            "inbound_mean": round(held.mean_ms, 1),
            "inbound_max": round(held.max_ms, 1),
            "outbound_mean": round(held_down.mean_ms, 1),
            "outbound_max": round(held_down.max_ms, 1),
        }
    return row


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{'engine':<8} {'audio':<20} {'protocol':<8} {'transport':<9} {'dir':<8} "
        f"{'markers':>7} "
        f"{'total p50':>9} {'p99':>6} "
        f"{'resampler p50':>13} {'p99':>5} {'bridge p50':>10} {'p99':>6}  (ms)  CPU s/call-s"
    ]
    for row in result["rows"]:
        for direction in ("inbound", "outbound"):
            part = row[direction]
            total, resampler, bridge = part["total_ms"], part["resampler_ms"], part["bridge_ms"]
            cpu = row.get("cpu_s_per_call_s") if direction == "inbound" else None
            lines.append(
                f"{row.get('engine', result.get('engine', '')):<8} "
                f"{row['audio']:<20} {row.get('protocol', 'realtime'):<8} "
                f"{row.get('transport', 'websocket'):<9} {direction:<8} "
                f"{total['count']:>7} "
                f"{_ms(total['p50']):>9} {_ms(total['p99']):>6} "
                f"{_ms(resampler['p50']):>13} {_ms(resampler['p99']):>5} "
                f"{_ms(bridge['p50']):>10} {_ms(bridge['p99']):>6}"
                + (f"        {cpu:.4f}" if cpu is not None else "")
            )
    lines.append(
        "inbound: caller's RTP send -> server reads the append; outbound: server writes the "
        "delta -> caller receives the RTP (kernel time). Resampler part from a replay of "
        "the same frames through soxr; bridge = total - resampler."
    )
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


async def run(
    modes: Sequence[AgentAudio],
    calls: int,
    call_s: float,
    engine: str = "pjsip",
    transports: Sequence[str] = ("websocket",),
    protocol: str = "realtime",
) -> dict[str, Any]:
    rows = []
    for audio in modes:
        for transport in transports:
            if transport == "webrtc" and audio.passthrough:
                continue  # the SDP chose Opus: there is no G.711 to pass through
            if protocol == "live" and transport == "websocket" and not audio.passthrough:
                continue  # GPT-Live on WebSocket takes the call's G.711 as it is
            with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
                rows.append(
                    await run_mode(audio, calls, call_s, Path(tmp), engine, transport, protocol)
                )
    return {
        "benchmark": "latency",
        "protocol": protocol,
        "engine": engine,
        "environment": environment(),
        "call_s": call_s,
        "calls": calls,
        "marker_every_ms": {"inbound": marker_period(0) * FRAME_MS, "outbound": _DELTA_PERIOD_MS},
        "rows": rows,
    }


def _parse_modes(text: str) -> list[AgentAudio]:
    modes = []
    for name in text.split(","):
        name = name.strip()
        modes.append(AgentAudio(passthrough=True) if name == "passthrough" else AgentAudio(name))
    return modes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 calls of 3 s, LQ only")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument(
        "--engine",
        default=SipSettings.engine,
        help="baresip, pjsip, or both side by side: baresip,pjsip",
    )
    parser.add_argument("--calls", type=int, default=3, help="concurrent calls (PJSIP: <= 4)")
    parser.add_argument("--call-s", type=float, default=30.0, help="length of each call")
    parser.add_argument(
        "--modes", default="LQ,MQ,passthrough", help="soxr qualities and/or 'passthrough'"
    )
    parser.add_argument(
        "--transport",
        default="websocket",
        help="websocket, webrtc, or both side by side: websocket,webrtc",
    )
    parser.add_argument(
        "--protocol", choices=("realtime", "live"), default="realtime", help="Realtime or GPT-Live"
    )
    args = parser.parse_args(argv)
    transports = [t.strip() for t in args.transport.split(",") if t.strip()]
    for transport in transports:
        if transport not in ("websocket", "webrtc"):
            parser.error(f"--transport: {transport!r} is not websocket or webrtc")
    engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    for engine in engines:
        if engine not in SIP_ENGINES:
            parser.error(f"--engine: {engine!r} is not one of {', '.join(SIP_ENGINES)}")
    if args.quick:
        modes = [AgentAudio(), AgentAudio(passthrough=True)] if args.protocol == "live" else []
        modes, calls, call_s = modes or [AgentAudio()], 2, 3.0
    else:
        modes, calls, call_s = _parse_modes(args.modes), args.calls, args.call_s
    runs = [
        asyncio.run(run(modes, calls, call_s, engine, transports, args.protocol))
        for engine in engines
    ]
    result = {
        **runs[0],
        "engine": ",".join(engines),
        "rows": [r for run_ in runs for r in run_["rows"]],
    }
    print(format_table(result))
    write_json(result, args.json)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
