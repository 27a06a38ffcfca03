"""Outbound calls: where the time goes from ``voice-agent call`` to the agent's first words.

Usage: uv run python bench/outbound.py [--calls N] [--engines baresip,pjsip] [--json PATH]

Each call is a real ``voice-agent call`` process dialling a SIPp callee on 127.0.0.1 that
rings (180), answers 300 ms later, and plays a person through the test's RtpPeer: a moment,
"hello?" (0.6 s), then silence (testbed/callee_audio.py ``hello``). The realtime side is the
local server in this process, replying with a 1 s tone. Per call, from the call record and the
callee's RTP: the command's start to its INVITE (process start, SIP and session set-up), the
INVITE to the 180 and to the answer, the answering-machine verdict after the answer, and the
first agent audio the callee received after the answer (the verdict plus the greeting's first
audio). Times are wall-clock on a shared machine: figures, never assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.audio.levels import rms_dbfs
from bench.harness import RESULTS, percentiles, write_json
from testbed.callee_audio import hello
from testbed.peers import SIP_ENGINES, CallCommand, RtpPeer, engine_args, sipp_callee
from testbed.recording import RecordingServer
from testbed.responders import tone_responder

DEFAULT_JSON = RESULTS / "outbound.json"
#: A packet of agent audio: louder than this (the tone is about -14 dBFS).
HEARD_DBFS = -40.0


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def one_call(engine: str, server: RecordingServer, workdir: Path) -> dict[str, Any]:
    config = workdir / "agent.toml"
    config.write_text(
        "[outbound]\nallow = ['sip:callee@127\\.0\\.0\\.1:[0-9]+']\n"
        "[agent]\nmax_call_s = 4\nmax_call_goodbye_s = 0\n"
    )
    peer = await RtpPeer.open()
    callee = await sipp_callee(
        "uas_answer.xml", workdir / "sipp", keys={"sink_port": str(peer.port)}
    )
    wall = time.time() - time.monotonic()
    person = hello()
    try:
        peer.talk(person.pcm + bytes(person.rate * 2 * 20), "PCMU")
        command = CallCommand()
        started = time.time()
        status = await command.run(
            callee.uri,
            ["--config", str(config), "--realtime-url", server.url, *engine_args(engine)],
        )
        await callee.result()
    finally:
        peer.close()
    (record,) = command.records()
    outbound = record["outbound"]
    answered = _unix(record["times"]["answer"])
    invite = _unix(record["times"]["invite"])
    heard = [
        packet.arrival + wall
        for packet in peer.packets
        if packet.arrival + wall > answered and rms_dbfs(RtpPeer.decode(packet)) > HEARD_DBFS
    ]
    return {
        "engine": engine,
        "exit": status,
        "outcome": outbound["outcome"],
        "start_to_invite_ms": round((invite - started) * 1000),
        "progress_ms": outbound["progress_ms"],
        "answer_ms": outbound["answer_ms"],
        "amd_verdict": (record.get("amd") or {}).get("verdict"),
        "amd_decided_ms": (record.get("amd") or {}).get("decided_ms"),
        "first_agent_audio_ms": round((heard[0] - answered) * 1000) if heard else None,
    }


async def run(calls: int, engines: list[str]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    async with RecordingServer(responder_factory=tone_responder(1.0, "Hello.")) as server:
        for engine in engines:
            for index in range(calls):
                with tempfile.TemporaryDirectory(prefix="bench-outbound-") as directory:
                    rows.append(await one_call(engine, server, Path(directory)))
                print(f"{engine} call {index + 1}/{calls}: {rows[-1]}", flush=True)
    summary: dict[str, Any] = {}
    for engine in engines:
        mine = [row for row in rows if row["engine"] == engine]
        summary[engine] = {
            "answered": sum(1 for row in mine if row["outcome"] == "answered"),
            "human_verdicts": sum(1 for row in mine if row["amd_verdict"] == "human"),
            **{
                key: percentiles([row[key] for row in mine if row[key] is not None], 0)
                for key in (
                    "start_to_invite_ms",
                    "progress_ms",
                    "answer_ms",
                    "amd_decided_ms",
                    "first_agent_audio_ms",
                )
            },
        }
    return {"calls_per_engine": calls, "engines": summary, "calls": rows}


def format_table(result: dict[str, Any]) -> str:
    keys = ("start_to_invite_ms", "progress_ms", "answer_ms", "amd_decided_ms",
            "first_agent_audio_ms")  # fmt: skip
    lines = [f"{'engine':8} {'answered':>8} " + " ".join(f"{k:>22}" for k in keys)]
    for engine, row in result["engines"].items():
        cells = [f"{row[k]['p50']:>10.0f} / {row[k]['max']:>9.0f}" if row[k]["count"] else
                 f"{'-':>22}" for k in keys]  # fmt: skip
        lines.append(f"{engine:8} {row['answered']:>8} " + " ".join(cells))
    lines.append("(p50 / max, ms; start_to_invite from the command's start, the rest from "
                 "the INVITE, the verdict and first audio from the answer)")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5, help="calls per engine")
    parser.add_argument("--engines", default=",".join(SIP_ENGINES))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.calls, args.engines.split(",")))
    write_json(result, args.json)
    print(format_table(result))
    return 0 if all(row["exit"] == 0 for row in result["calls"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
