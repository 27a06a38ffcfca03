"""Soak: N calls in sequence, C at a time, into one agent, optionally with the CPU contended.

It looks for what only shows after many calls: a crash (a signal, an abort, a fatal Python
error printed by faulthandler), calls that fail, and resources that do not come back (RSS,
threads, file descriptors, sockets). SIPp places the calls and streams a caller's voice over
RTP; the realtime side is the minimal stream server, in a process of its own. With
``--contention K`` K busy-looping processes compete for the 2 cores, which is how a race
between the media clock thread and the event loop shows up. Core dumps are enabled for the
agent (written to a temporary directory, kept and named when the agent crashed).

``uv run python bench/soak.py --calls 300 --concurrency 3 --call-ms 3000 --contention 2``
prints a table and writes ``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, Child, environment, write_json
from testbed.peers import AgentProcess, free_port, run_sipp, write_g711_stream

DEFAULT_JSON = RESULTS / "soak.json"
_FATAL_MARKERS = ("Fatal Python error", "Segmentation fault", "Assertion", "Aborted")


def resources(pid: int) -> dict[str, int]:
    """RSS (kB), threads, file descriptors and sockets of a process."""
    fds = os.listdir(f"/proc/{pid}/fd")
    sockets = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                sockets += 1
    rss_kb = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return {
        "rss_kb": rss_kb // 1024,
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "fds": len(fds),
        "sockets": sockets,
    }


def _busy_loops(count: int) -> list[subprocess.Popen[bytes]]:
    # Plain CPU burners: what a loaded 2-core box looks like to the media clock thread.
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]


def _sipp_counts(output: str) -> tuple[int, int]:
    successful = failed = 0
    for line in output.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[0] in ("Successful call", "Failed call"):
            value = int(parts[2]) if parts[2].isdigit() else 0
            if parts[0].startswith("Successful"):
                successful = value
            else:
                failed = value
    return successful, failed


async def soak(
    calls: int,
    concurrency: int,
    call_ms: int,
    rate: float,
    contention: int,
    engine_args: list[str],
    workdir: Path,
) -> dict[str, Any]:
    """Run the soak once; the result says what happened, never raises for a crashed agent."""
    server = await Child.start("bench.stream_server", "--out", str(workdir / "server.json"))
    config = workdir / "agent.toml"
    config.write_text(
        f"[sip]\nmax_calls = {concurrency}\nsession_timeout_s = 20.0\n"
        '[agent]\ngreeting = "Talk until the caller hangs up."\n[records]\ndir = ""\n'
    )
    cores = workdir / "cores"
    cores.mkdir()
    agent = AgentProcess(
        free_port(),
        ["--realtime-url", server.ready["url"], "--config", str(config), *engine_args],
        env={"PYTHONFAULTHANDLER": "1"},
        cwd=cores,
    )
    burners: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    try:
        await agent.start(60.0)
        assert agent.proc is not None
        pid = agent.proc.pid
        stream = write_g711_stream(workdir / "caller.PCMU", "PCMU", talk_s=1.0, pause_s=1.0)
        warm = await run_sipp(
            "uac_audio.xml", agent.sip_port,
            keys={"codec_pt": "0", "codec_name": "PCMU"},
            fill={"stream_file": str(stream), "codec_pt": "0", "call_ms": "500"},
            workdir=workdir, calls=2, timeout_s=60,
        )  # fmt: skip
        await asyncio.sleep(1.0)
        before = resources(pid)
        burners = _busy_loops(contention)
        expected_s = calls / rate + call_ms / 1000
        result = await run_sipp(
            "uac_audio.xml", agent.sip_port,
            keys={"codec_pt": "0", "codec_name": "PCMU"},
            fill={"stream_file": str(stream), "codec_pt": "0", "call_ms": str(call_ms)},
            workdir=workdir, calls=calls, concurrent=concurrency, rate=rate,
            timeout_s=expected_s * 2 + 60,
        )  # fmt: skip
        for burner in burners:
            burner.kill()
        await asyncio.sleep(2.0)
        alive = agent.proc.returncode is None
        after = resources(pid) if alive else {}
        exit_status = await agent.stop(timeout_s=30.0)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
        await server.stop()
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.stop()
    successful, failed = _sipp_counts(result.output)
    fatal = [line for line in agent.raw if any(m in line for m in _FATAL_MARKERS)]
    core_files = sorted(str(p) for p in cores.iterdir())
    return {
        "calls": calls,
        "concurrency": concurrency,
        "call_ms": call_ms,
        "rate_per_s": rate,
        "contention_processes": contention,
        "warmup_ok": warm.returncode == 0,
        "successful": successful,
        "failed": failed,
        "sipp_returncode": result.returncode,
        "agent_alive_at_end": alive,
        "agent_exit_status": exit_status,
        "fatal_lines": fatal[:20],
        "core_files": core_files,
        "calls_finished": len(agent.events("call_finished")),
        "before": before,
        "after": after,
        "seconds": round(time.monotonic() - started, 1),
    }


def format_table(row: dict[str, Any]) -> str:
    before, after = row["before"], row["after"] or {}
    lines = [
        f"soak: {row['calls']} calls, {row['concurrency']} at a time, {row['call_ms']} ms each, "
        f"{row['contention_processes']} CPU burners, {row['seconds']} s",
        f"  answered/failed (SIPp): {row['successful']} / {row['failed']}; "
        f"agent alive: {row['agent_alive_at_end']}, exit status {row['agent_exit_status']}",
        f"  crashes: {len(row['fatal_lines'])} fatal lines, {len(row['core_files'])} core files",
        "  resource   before   after   change",
    ]
    for key in ("rss_kb", "threads", "fds", "sockets"):
        b, a = before.get(key), after.get(key)
        change = f"{a - b:+d}" if a is not None and b is not None else "-"
        lines.append(f"  {key:<9}{b!s:>8}{a!s:>8}{change:>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--call-ms", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=1.0, help="new calls per second")
    parser.add_argument("--contention", type=int, default=0, help="CPU-burning processes")
    parser.add_argument("--quick", action="store_true", help="10 calls, 2 at a time (smoke)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("agent_args", nargs="*", help="extra `voice-agent serve` arguments")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.concurrency, args.call_ms, args.rate = 10, 2, 800, 4.0
    # Core dumps of a crashing agent land in its working directory (a temporary one).
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    keep = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    row = asyncio.run(
        soak(
            args.calls, args.concurrency, args.call_ms, args.rate, args.contention,
            args.agent_args, keep,
        )
    )  # fmt: skip
    if not row["core_files"] and not row["fatal_lines"]:
        shutil.rmtree(keep, ignore_errors=True)
    else:
        print(f"kept {keep} (core files, scenario, logs)")
    result = {"benchmark": "soak", "environment": environment(), "run": row}
    print(format_table(row))
    write_json(result, args.json)
    print(f"wrote {args.json}")
    return 0 if row["agent_alive_at_end"] and row["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
