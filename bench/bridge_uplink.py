"""What one 20 ms caller frame costs on the loop, from the bridge to the wire text.

Usage: uv run python bench/bridge_uplink.py [--frames N] [--repeats N] [--json PATH]

One ``CallBridge`` per session format (soxr LQ to 24 kHz PCM16, and G.711 passthrough), fed a
tone frame by frame as the media clock does: ``caller_frame``, ``tick``, the playout pulled,
and each ``AppendAudio`` encoded by the GA adapter. No sockets, no event loop: the bridge's and
the adapter's share of the uplink alone. Beside it, in the same run, G.711 encoding of one frame
both ways: the 65 536-entry table (``ulaw_encode``) against the segment arithmetic that builds
it. Figures are the best of ``--repeats`` runs (the least disturbed by other tenants).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent.audio.g711 import _ulaw_codes, ulaw_encode
from agent.audio.pcm import SIP_RATE, as_int16
from agent.bridge import BridgeConfig, CallBridge, Step
from agent.bridge.requests import SessionSpec
from agent.realtime.adapter import RealtimeAdapter
from agent.realtime.dialect import Dialect

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bridge_uplink.json"
FRAME_SAMPLES = SIP_RATE // 50
TONE = (np.sin(np.arange(FRAME_SAMPLES) * 2 * np.pi * 400 / SIP_RATE) * 3000).astype("<i2")


def _session_ready(passthrough: bool) -> tuple[CallBridge, RealtimeAdapter]:
    spec = SessionSpec("Be brief.", "marin", turn_detection={"type": "server_vad"})
    bridge = CallBridge(BridgeConfig(session=spec, g711_passthrough=passthrough, greeting="Hi."))
    adapter = RealtimeAdapter(Dialect.GA)
    bridge.session_config()
    updated = {"type": "realtime", "object": "realtime.session", "id": "sess_bench"}
    wire = json.dumps({"type": "session.updated", "event_id": "event_1", "session": updated})
    for event in adapter.parse(wire):
        bridge.server_event(event, 0.0)
    bridge.media_started("PCMU", SIP_RATE)
    bridge.call_confirmed(0.0)
    return bridge, adapter


def uplink_us(passthrough: bool, frames: int, repeats: int) -> float:
    """Best µs per frame through one bridge in ``repeats`` runs of ``frames`` frames."""
    bridge, adapter = _session_ready(passthrough)
    frame = TONE.tobytes()
    clock = [0.0]

    def one_frame() -> None:
        clock[0] += 20
        step = Step()
        step.add(bridge.caller_frame(frame, clock[0]))
        step.add(bridge.tick(clock[0]))
        for request in step.requests:
            adapter.encode(request)
        bridge.playout.pull()

    _best_us(one_frame, frames, 1)  # warm-up: the resampler's start-up fill, caches
    return _best_us(one_frame, frames, repeats)


def _best_us(work: Callable[[], object], frames: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(frames):
            work()
        best = min(best, (time.perf_counter() - started) / frames * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()

    frame = TONE.tobytes()
    assert ulaw_encode(frame) == _ulaw_codes(as_int16(frame)).tobytes()
    results = {
        "uplink_us_per_frame": {
            "soxr LQ": round(uplink_us(False, args.frames, args.repeats), 2),
            "G.711 passthrough": round(uplink_us(True, args.frames, args.repeats), 2),
        },
        "ulaw_encode_us_per_frame": {
            "table": round(_best_us(lambda: ulaw_encode(frame), args.frames, args.repeats), 2),
            "arithmetic": round(
                _best_us(lambda: _ulaw_codes(as_int16(frame)).tobytes(), args.frames, args.repeats),
                2,
            ),
        },
    }
    uplink, encode = results["uplink_us_per_frame"], results["ulaw_encode_us_per_frame"]
    print(f"{'uplink per frame':>24}  soxr LQ {uplink['soxr LQ']:6.2f} µs   "
          f"G.711 passthrough {uplink['G.711 passthrough']:6.2f} µs   "
          f"ratio {uplink['G.711 passthrough'] / uplink['soxr LQ']:.2f}")  # fmt: skip
    print(f"{'mu-law encode per frame':>24}  table   {encode['table']:6.2f} µs   "
          f"arithmetic        {encode['arithmetic']:6.2f} µs   "
          f"ratio {encode['table'] / encode['arithmetic']:.2f}")  # fmt: skip
    report = {
        "benchmark": "bridge_uplink",
        "frames": args.frames,
        "repeats": args.repeats,
        "environment": {"python": platform.python_version(), "machine": platform.machine()},
        **results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
