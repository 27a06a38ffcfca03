"""One supervised process of the cluster: started, watched, restarted, stopped by signal.

Its output is read line by line and relayed on the cluster's stderr with its name: a JSON
line (agents and the local backend always log JSON to the cluster) gets ``"proc": name``
and is rendered in the cluster's own format; any other line (Kamailio's) is prefixed.

Children run in their own process group, so a Ctrl-C in the terminal reaches the cluster
alone and the cluster decides the order of shutdown (agents drain while the front door still
carries their BYEs). If the cluster itself dies, the kernel sends each child SIGTERM
(``PR_SET_PDEATHSIG``), so nothing outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

log = structlog.get_logger("cluster")

_PR_SET_PDEATHSIG = 1
#: Loaded here, not after the fork: the child only makes the one call.
_libc = ctypes.CDLL(None, use_errno=True)
#: A child that ran this long before it died is restarted at once; sooner, after a backoff
#: that doubles up to ``_MAX_BACKOFF_S`` (a crash loop must not spin).
_STABLE_S = 30.0
_MAX_BACKOFF_S = 30.0


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the cluster process dies."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Child:
    """``command`` as a child process named ``name``."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        render: Callable[[dict[str, Any]], str],
        on_line: Callable[[dict[str, Any]], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self._render = render
        self._on_line = on_line
        self._env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.tail: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._backoff_s = 1.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self.tail.clear()
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._env,
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        self._started_at = time.monotonic()
        self._reader = asyncio.create_task(self._relay(self.proc), name=f"relay-{self.name}")
        log.info("cluster_child_started", proc=self.name, pid=self.proc.pid)

    async def wait(self) -> int:
        """The exit status, once the process is gone and its output read."""
        assert self.proc is not None
        code = await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        return code

    def restart_delay(self) -> float:
        """How long to wait before restarting a child that just died."""
        if time.monotonic() - self._started_at >= _STABLE_S:
            self._backoff_s = 1.0
            return 0.0
        delay, self._backoff_s = self._backoff_s, min(self._backoff_s * 2, _MAX_BACKOFF_S)
        return delay

    async def stop(self, timeout_s: float, sig: int = signal.SIGTERM) -> int | None:
        """Send ``sig``; SIGKILL after ``timeout_s``. The exit status (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                return await asyncio.wait_for(self.wait(), timeout_s)
            except TimeoutError:
                log.warning("cluster_child_killed", proc=self.name, after_s=timeout_s)
                self.kill()
        return await self.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def _relay(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            text = raw.decode(errors="replace").rstrip()
            if not text:
                continue
            self.tail = [*self.tail[-19:], text]
            line: Any = None
            if text.startswith("{"):
                with contextlib.suppress(ValueError):
                    line = json.loads(text)
            if isinstance(line, dict):
                line["proc"] = self.name
                if self._on_line is not None:
                    self._on_line(line)
                out = self._render(line)
            else:
                out = f"[{self.name}] {text}"
            print(out, file=sys.stderr, flush=True)
