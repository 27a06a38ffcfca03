"""``voice-agent cluster``: Kamailio in front of N agents on one machine, with one backend.

Start order: the local backend (only when no cloud provider is configured: one process all
workers share, instead of one embedded per worker with its own models), then the workers,
each until its ``/readyz`` says ready, then the front door, until it answers OPTIONS. A
child that dies while the cluster runs is started again (after a backoff when it keeps
dying); the front door's keep-alives take a dead worker out and put it back by themselves.

Stop order (SIGTERM or Ctrl-C): the workers drain together (they answer OPTIONS and INVITEs
503, so the front door sends new calls nowhere, and their calls run on), the front door
stays up meanwhile (the calls' BYEs go through it), then the front door, then the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from agent.cluster.child import Child
from agent.cluster.frontdoor import check_kamailio, frontdoor_command, sip_ping
from agent.cluster.plan import ClusterPlan, WorkerPlan
from agent.config import ConfigError, Settings
from agent.ports import unused_port
from agent.realtime.endpoint import choose_provider

log = structlog.get_logger("cluster")

#: How long a worker may take from exec to ready, and the front door to answer.
START_TIMEOUT_S = 60.0
#: A worker's stop: its drain, then this much for PJSIP and the HTTP listener to close.
STOP_MARGIN_S = 15.0
_LOCAL_SERVER_LISTENING = "local realtime server listening"


@dataclass(frozen=True)
class ClusterOptions:
    """What the cluster passes on to its workers (the rest is in the profile)."""

    config: Path | None = None
    env_file: Path | None = None
    realtime_url: str = ""
    dialect: str = ""
    protocol: str = ""
    engine: str = ""
    log_format: str = "console"
    log_level: str = ""
    records_dir: str | None = None


class Cluster:
    def __init__(self, settings: Settings, plan: ClusterPlan, options: ClusterOptions) -> None:
        self.settings = settings
        self.plan = plan
        self.options = options
        check_kamailio()
        self._python = [sys.executable, "-m", "agent.cli"]
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._renderer = structlog.dev.ConsoleRenderer(colors=False)
        self.backend: Child | None = None
        self.workers: list[Child] = []
        self.frontdoor: Child | None = None
        self.backend_url = options.realtime_url
        self.http_urls: dict[str, asyncio.Future[str]] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- running ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, serve until ``stop`` is set, stop everything in order."""
        workdir = Path(tempfile.mkdtemp(prefix="voice-agent-cluster-"))
        try:
            await self._start(workdir)
            self._watchers = [
                asyncio.create_task(self._watch(child), name=f"watch-{child.name}")
                for child in self.children
            ]
            log.info(
                "cluster_ready",
                sip=f"sip:{self.settings.sip.user}@{self.plan.host}:{self.plan.sip_port}",
                backend=self.backend_url or "the profile's provider",
                workers=[
                    {"proc": w.name, "sip_port": p.sip_port, "rtp": p.rtp_ports, "pid": w.pid}
                    for w, p in zip(self.workers, self.plan.workers, strict=True)
                ],
                frontdoor_pid=self.frontdoor.pid if self.frontdoor else None,
            )
            await stop.wait()
        finally:
            await self._stop()
            shutil.rmtree(workdir, ignore_errors=True)

    @property
    def children(self) -> list[Child]:
        found = [self.backend, *self.workers, self.frontdoor]
        return [child for child in found if child is not None]

    def kill_all(self) -> None:
        """The second signal: no drain, no order."""
        for child in self.children:
            child.kill()

    # -- start -----------------------------------------------------------------------------
    async def _start(self, workdir: Path) -> None:
        if not self.backend_url and choose_provider(self.settings) == "local":
            await self._start_backend()
        for plan in self.plan.workers:
            child = self._worker(plan)
            self.workers.append(child)
            await self._started(child, self._worker_ready(child))
        command, env = frontdoor_command(self.plan, workdir)
        self.frontdoor = Child("frontdoor", command, self._render, env={**self._env, **env})
        await self._started(self.frontdoor, self._frontdoor_ready())

    async def _start_backend(self) -> None:
        local = self.settings.local
        port = unused_port("127.0.0.1", socket.SOCK_STREAM)
        command = [*self._python, "local-server", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--log-format", "json"]
        if local.backend == "synthetic":
            command.append("--synthetic")
        if local.brain:
            command += ["--brain", local.brain]
        listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_line(line: dict[str, Any]) -> None:
            if line.get("event") == _LOCAL_SERVER_LISTENING and not listening.done():
                listening.set_result(str(line.get("url", "")))

        self.backend = Child("backend", command, self._render, on_line, self._env)
        self.backend_url = f"ws://127.0.0.1:{port}/v1/realtime"
        await self._started(self.backend, listening)

    def _worker(self, plan: WorkerPlan) -> Child:
        options = self.options
        command = [
            *self._python, "serve",
            "--sip-host", self.plan.host, "--sip-port", str(plan.sip_port),
            "--rtp-port", plan.rtp_ports, "--http-port", str(plan.http_port),
            "--log-format", "json",
            # The front door relays every call from this address: let it call.
            "--allow-from", self.plan.host,
        ]  # fmt: skip
        if options.config is not None:
            command += ["--config", str(options.config)]
        if options.env_file is not None:
            command += ["--env-file", str(options.env_file)]
        if self.backend_url:
            command += ["--realtime-url", self.backend_url]
        if options.dialect:
            command += ["--dialect", options.dialect]
        if options.protocol:
            command += ["--protocol", options.protocol]
        if options.engine:
            command += ["--engine", options.engine]
        if options.log_level:
            command += ["--log-level", options.log_level]
        if options.records_dir is not None:
            command += ["--records-dir", options.records_dir]
        url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.http_urls[plan.name] = url

        def on_line(line: dict[str, Any]) -> None:
            if line.get("event") == "agent_listening" and not url.done():
                url.set_result(str(line.get("http", "")))

        return Child(plan.name, command, self._render, on_line, self._env)

    async def _started(self, child: Child, ready: asyncio.Future[Any] | Any) -> None:
        """Start ``child`` and wait for ``ready``; a child that exits first stops the start."""
        await child.start()
        waiting = asyncio.ensure_future(ready)
        exited = asyncio.ensure_future(child.wait())
        try:
            done, _ = await asyncio.wait(
                {waiting, exited}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (waiting, exited):
                task.cancel()
        if waiting in done and not waiting.cancelled() and waiting.exception() is None:
            return
        last = child.tail[-1] if child.tail else "no output"
        if exited in done:
            raise ConfigError(f"{child.name} exited during start ({exited.result()}): {last}")
        raise ConfigError(f"{child.name} was not ready within {START_TIMEOUT_S:g} s: {last}")

    async def _worker_ready(self, child: Child) -> None:
        base = await self.http_urls[child.name]
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{base}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)

    async def _frontdoor_ready(self) -> None:
        while await sip_ping(self.plan.host, self.plan.sip_port, 0.5) is None:
            await asyncio.sleep(0.1)

    # -- while running ---------------------------------------------------------------------
    async def _watch(self, child: Child) -> None:
        while True:
            status = await child.wait()
            if self._stopping:
                return
            delay = child.restart_delay()
            log.warning("cluster_child_exited", proc=child.name, status=status, restart_in_s=delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            await child.start()

    def _render(self, line: dict[str, Any]) -> str:
        if self.options.log_format == "json":
            return json.dumps(line)
        rendered: str = self._renderer(None, "", dict(line))
        return rendered

    # -- stop ------------------------------------------------------------------------------
    async def _stop(self) -> None:
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        log.info("cluster_stopping", workers=len(self.workers))
        started = time.monotonic()
        drain = self.settings.sip.drain_timeout_s + STOP_MARGIN_S
        statuses = await asyncio.gather(*(worker.stop(drain) for worker in self.workers))
        for worker, status in zip(self.workers, statuses, strict=True):
            log.info("cluster_child_stopped", proc=worker.name, status=status)
        for child in (self.frontdoor, self.backend):
            if child is not None:
                log.info("cluster_child_stopped", proc=child.name, status=await child.stop(5.0))
        log.info("cluster_stopped", after_s=round(time.monotonic() - started, 2))
