"""Writes call records atomically, and keeps the ones it could not write until it can.

A record is written to ``<name>.tmp``, fsynced, renamed over its final name and the directory
fsynced: a reader (or a crash) sees either no record or the whole one, never half. When the
write fails (a full disk, a directory gone read-only) the record is kept in memory, the
failure is logged once with the call id, and the write is retried with a growing pause
(``RETRY_S``); at shutdown each kept record is tried one last time and, failing that, logged
whole, so it is never lost silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import structlog

from agent.observe.logging import scrub

log = structlog.get_logger("records")

#: Pauses between retries of a record that could not be written (the last one repeats).
RETRY_S = (1.0, 5.0, 30.0, 120.0)


def scrubbed(value: Any) -> Any:
    """``value`` with every registered secret masked in its strings, at any depth. Keys are
    left alone: the API's usage counts ``input_tokens``, which a log's key mask would hide."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(item) for item in value]
    return value


def write_atomically(path: Path, document: dict[str, Any]) -> None:
    """``document`` as JSON at ``path``, complete or not at all; raises ``OSError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode()
    with tmp.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    # The rename itself is durable once the directory is.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RecordStore:
    """The process's call record writer (one per agent)."""

    def __init__(self) -> None:
        #: Records not written yet: path -> document.
        self.pending: dict[Path, dict[str, Any]] = {}
        self._retry: asyncio.Task[None] | None = None

    async def save(self, path: Path, record: dict[str, Any]) -> bool:
        """Write ``record`` (secrets scrubbed) to ``path``; True once it is on disk, False
        when it is kept for a retry."""
        document = scrubbed(record)
        try:
            await asyncio.to_thread(write_atomically, path, document)
        except OSError as exc:
            log.error(
                "call_record_write_failed",
                call_id=record.get("call_id"),
                path=str(path),
                error=f"{type(exc).__name__}: {exc}",
            )
            self.pending[path] = document
            if self._retry is None or self._retry.done():
                self._retry = asyncio.get_running_loop().create_task(self._retry_pending())
            return False
        log.info("call_record_written", call_id=record.get("call_id"), path=str(path))
        return True

    async def _retry_pending(self) -> None:
        attempt = 0
        while self.pending:
            await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
            attempt += 1
            self._write_pending(final=False)

    def _write_pending(self, final: bool) -> None:
        for path, document in list(self.pending.items()):
            try:
                write_atomically(path, document)
            except OSError as exc:
                if final:
                    # Nowhere left to keep it but the log.
                    log.error(
                        "call_record_lost_to_log",
                        call_id=document.get("call_id"),
                        path=str(path),
                        error=f"{type(exc).__name__}: {exc}",
                        record=document,
                    )
                continue
            del self.pending[path]
            log.info("call_record_written", call_id=document.get("call_id"), path=str(path))

    async def close(self) -> None:
        """The agent stops: one last try for every kept record."""
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        if self.pending:
            await asyncio.to_thread(self._write_pending, True)
        self.pending.clear()
