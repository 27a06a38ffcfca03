"""What a media frame callback costs through the pjsua2 SWIG binding, on the real clock.

Usage: uv run python bench/swig_callbacks.py [--quick] [--json PATH]

An in-process PJSUA2 endpoint (null sound device, the agent's media settings) runs its
conference clock; pairs of media ports are cross-connected (A -> B, B -> A), so every 20 ms
each port gets one ``onFrameRequested`` and one ``onFrameReceived``, as a call's port does.
The CPU time of PJSIP's media threads (from /proc) is measured with 1 and with 9 pairs; the
difference, over the 1,600 extra callbacks a second, is the cost of one. The two are taken in
turns, several times, and the median kept: other work on the machine moves single readings.
Two port kinds:

- ``empty``: a SWIG director whose callbacks return at once (dispatch + taking the GIL);
- ``bridge``: the agent's ``BridgePort`` with a ``Playout`` as its source (the real body);
- the difference is what our Python bodies cost.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pjsua2 as pj

from agent.audio.pcm import FRAME_MS, SIP_RATE, frame_bytes
from agent.audio.playout import Playout
from agent.sip.pjsip.frame_bytes import FAST_FRAME_ACCESS
from agent.sip.pjsip.media_port import BridgePort

#: The bridge clock and ports of a G.711 call.
SAMPLE_RATE = SIP_RATE
FRAME_BYTES = frame_bytes(SAMPLE_RATE)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "swig_callbacks.json"


class EmptyPort(pj.AudioMediaPort):
    """A port whose callbacks do nothing: the cost of SWIG's director call and the GIL."""

    def __init__(self, name: str) -> None:
        super().__init__()
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = SAMPLE_RATE
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = FRAME_MS * 1000
        self.createPort(name, fmt)

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        return None

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        return None


def _endpoint() -> pj.Endpoint:
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    med = cfg.medConfig
    med.clockRate = SAMPLE_RATE
    med.sndClockRate = SAMPLE_RATE
    med.channelCount = 1
    med.audioFramePtime = FRAME_MS
    med.noVad = True
    med.ecTailLen = 0
    # Keep the null sound device (and its clock thread) running with no port connected, so
    # the zero-pair baseline measures the same threads as the others.
    med.sndAutoCloseTime = -1
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    ep.libStart()
    return ep


def _other_threads_ns() -> int:
    """CPU of every thread but this one (the media clock does all the frame work)."""
    me = threading.get_native_id()
    total = 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) == me:
            continue
        try:
            total += int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
        except OSError:
            continue
    return total


def _bridge_port(name: str) -> BridgePort:
    port = BridgePort(name)
    playout = Playout()
    # A minute of non-silent audio (longer than any measurement): every pull takes the
    # common path, one slice of one segment.
    playout.push("bench", (b"\x10\x02" * (FRAME_BYTES // 2)) * 50 * 60)
    port.source = playout
    return port


def _measure(ep: pj.Endpoint, kind: str, pairs: int, seconds: float) -> float:
    """Clock-thread CPU ns per second with ``pairs`` cross-connected port pairs."""
    make = _bridge_port if kind == "bridge" else EmptyPort
    ports = [make(f"{kind}{i}") for i in range(2 * pairs)]
    for a, b in zip(ports[::2], ports[1::2], strict=True):
        a.startTransmit(b)
        b.startTransmit(a)
    time.sleep(0.3)  # let the bridge settle
    before, start = _other_threads_ns(), time.monotonic()
    # Poll mode: this thread keeps PJSIP's timers going while the clock runs on its own.
    while time.monotonic() - start < seconds:
        ep.libHandleEvents(10)
    used = _other_threads_ns() - before
    elapsed = time.monotonic() - start
    for a, b in zip(ports[::2], ports[1::2], strict=True):
        a.stopTransmit(b)
        b.stopTransmit(a)
    del ports
    return used / elapsed


FEW, MANY = 1, 9


def run(seconds: float, repeats: int) -> dict[str, Any]:
    ep = _endpoint()
    try:
        rows: list[dict[str, Any]] = []
        for kind in ("empty", "bridge"):
            costs = []
            for _ in range(repeats):
                few = _measure(ep, kind, FEW, seconds)
                many = _measure(ep, kind, MANY, seconds)
                # A pair is 2 ports x 2 callbacks x 50 frames a second.
                costs.append((many - few) / ((MANY - FEW) * 2 * 2 * 1000 / FRAME_MS) / 1e3)
            rows.append(
                {
                    "port": kind,
                    "us_per_callback": round(float(np.median(costs)), 1),
                    "us_per_callback_runs": [round(c, 1) for c in costs],
                }
            )
    finally:
        gc.collect()
        ep.libDestroy()
    empty, bridge = rows
    return {
        "benchmark": "swig_callbacks",
        "seconds_per_point": seconds,
        "repeats": repeats,
        "fast_frame_access": FAST_FRAME_ACCESS,
        "python": sys.version.split()[0],
        "rows": rows,
        "body_us_per_callback": round(bridge["us_per_callback"] - empty["us_per_callback"], 1),
    }


def format_table(result: dict[str, Any]) -> str:
    lines = ["port     us/callback (median)  runs"]
    for row in result["rows"]:
        runs = ", ".join(f"{v:.1f}" for v in row["us_per_callback_runs"])
        lines.append(f"{row['port']:<8} {row['us_per_callback']:>20.1f}  {runs}")
    lines.append(
        f"our Python body: {result['body_us_per_callback']:.1f} us per callback (bridge - empty); "
        "the rest is SWIG's director call and taking the GIL."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.5 s per point, once")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    args = parser.parse_args(argv)
    result = run(0.5, 1) if args.quick else run(2.0, 5)
    print(format_table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
