"""``voice-agent cluster`` as a child process: its JSON lines, its workers, calls through it."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.peers import (
    HOST,
    REPO,
    JsonLinesChild,
    RtpPeer,
    SippResult,
    run_sipp,
    talk_then_pause,
)


@dataclass
class ClusterProcess(JsonLinesChild):
    """The cluster on ``sip_port`` (its workers on the next ports), logging JSON lines."""

    sip_port: int
    args: list[str] = field(default_factory=list)

    async def start(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Start it; the ``cluster_ready`` line."""
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
        command = [
            sys.executable, "-m", "agent.cli", "cluster",
            "--sip-host", HOST, "--sip-port", str(self.sip_port), "--log-format", "json",
            "--env-file", os.devnull, "--records-dir", "", "--http-port", "0", *self.args,
        ]  # fmt: skip
        await self._spawn(command, REPO, env)
        return (await self.wait_for("cluster_ready", timeout_s))[0]

    def events(self, name: str, proc: str | None = None) -> list[dict[str, Any]]:
        return [
            line
            for line in self.lines
            if line.get("event") == name and (proc is None or line.get("proc") == proc)
        ]

    async def wait_for(
        self, name: str, timeout_s: float, count: int = 1, proc: str | None = None
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.events(name, proc)
            if len(found) >= count:
                return found
            if self.proc is not None and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        tail = "\n".join(line for line in self.raw[-40:] if not line.startswith("[frontdoor]"))
        raise AssertionError(f"cluster never logged {count}x {name!r} ({proc}); last:\n{tail}")

    def workers(self) -> dict[str, dict[str, Any]]:
        """Each worker's name -> its latest pid, SIP port and HTTP URL."""
        found: dict[str, dict[str, Any]] = {}
        for worker in self.events("cluster_ready")[0]["workers"]:
            found[worker["proc"]] = {"pid": worker["pid"], "sip_port": worker["sip_port"]}
        for line in self.events("cluster_child_started"):
            if line["proc"] in found:
                found[line["proc"]]["pid"] = line["pid"]
        for line in self.events("agent_listening"):
            found[line["proc"]]["http"] = line["http"]
        return found

    def answered_by(self) -> dict[str, int]:
        """How many finished calls each worker answered."""
        counts: dict[str, int] = {}
        for line in self.events("call_finished"):
            counts[line["proc"]] = counts.get(line["proc"], 0) + 1
        return counts

    async def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (every worker drains), then the exit status; kills after ``timeout_s``."""
        return await super().stop(timeout_s)


@dataclass
class ProxiedCall:
    """One call placed through the front door: SIPp signals, an RtpPeer talks and listens."""

    result: SippResult
    peer: RtpPeer
    seconds: float


async def call_through(port: int, call_ms: int, workdir: Path) -> ProxiedCall:
    """A call to the front door on ``port`` with one caller turn; the caller hangs up."""
    peer = await RtpPeer.open()
    # Each call renders its scenario in a directory of its own: calls run side by side.
    workdir = Path(tempfile.mkdtemp(prefix="call-", dir=workdir))
    started = time.monotonic()
    try:
        peer.talk(talk_then_pause(), "PCMU")
        result = await run_sipp(
            "uac_peer_proxy.xml", port, keys=peer.sipp_keys(),
            fill={"call_ms": str(call_ms)}, workdir=workdir,
        )  # fmt: skip
    finally:
        peer.close()
    return ProxiedCall(result, peer, time.monotonic() - started)
