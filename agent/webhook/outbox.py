"""The webhook outbox: one file per delivery, on disk until a receiver has taken it.

A delivery is written whole before its first attempt (a temporary file, fsync, rename, fsync
of the directory), so after a crash or a restart a file in the outbox is always a complete
body, and whatever is there is still owed. The file holds exactly the bytes that are POSTed;
its name is the delivery id (a ULID, so names sort by age) and its modification time the
moment the delivery was queued. A delivery that will never go through is moved to
``failed/`` and kept there, for an operator to look at or move back.

Several agent processes may share one outbox (one records directory): an attempt holds an
exclusive ``flock`` on the file, so only one of them sends a given delivery at a time, and a
file removed by another process in between is noticed and not sent again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".json"
TMP_PREFIX = ".tmp-"
FAILED_DIR = "failed"
#: A temporary file older than this is a write that never finished (the process died).
STALE_TMP_S = 3600.0


class OutboxFull(Exception):
    """The outbox already holds its maximum of pending deliveries."""


@dataclass(frozen=True)
class Entry:
    """One pending delivery on disk."""

    delivery_id: str
    path: Path
    #: Wall-clock time it was queued (the file's modification time).
    queued_at: float


class Claim:
    """An attempt's exclusive hold on one delivery file; ``body`` is what to send."""

    def __init__(self, path: Path, fd: int, body: bytes) -> None:
        self.path = path
        self.body = body
        self._fd = fd

    def delivered(self) -> None:
        """The receiver took it: remove the file, so no restart sends it again."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        _fsync_dir(self.path.parent)
        self.release()

    def give_up(self) -> Path:
        """Move the delivery to ``failed/``; its new path."""
        failed = self.path.parent / FAILED_DIR
        failed.mkdir(exist_ok=True)
        target = failed / self.path.name
        with contextlib.suppress(FileNotFoundError):
            self.path.rename(target)
        _fsync_dir(self.path.parent)
        self.release()
        return target

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


class Outbox:
    """The directory of pending deliveries."""

    def __init__(self, directory: Path, max_pending: int) -> None:
        self.directory = directory
        self.max_pending = max_pending

    def put(self, delivery_id: str, body: bytes) -> Entry:
        """Write one delivery durably; raises OutboxFull when ``max_pending`` are waiting."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if len(self.pending()) >= self.max_pending:
            raise OutboxFull(f"{self.max_pending} deliveries are pending")
        final = self.directory / f"{delivery_id}{SUFFIX}"
        tmp = self.directory / f"{TMP_PREFIX}{delivery_id}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        return Entry(delivery_id, final, final.stat().st_mtime)

    def pending(self) -> list[Entry]:
        """Every delivery waiting, oldest first."""
        if not self.directory.is_dir():
            return []
        entries = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            with contextlib.suppress(FileNotFoundError):
                entries.append(Entry(path.stem, path, path.stat().st_mtime))
        return entries

    def remove_stale_tmp(self, now_s: float | None = None) -> int:
        """Delete temporary files of writes that never finished; how many."""
        now = time.time() if now_s is None else now_s
        removed = 0
        for path in self.directory.glob(f"{TMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > STALE_TMP_S:
                    path.unlink()
                    removed += 1
        return removed

    @staticmethod
    def claim(entry: Entry) -> Claim | None:
        """Hold ``entry`` for one attempt; None when it is gone or another process holds it."""
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            # Another process may have delivered and removed it between our open and lock.
            if os.stat(entry.path).st_ino != os.fstat(fd).st_ino:
                raise FileNotFoundError(entry.path)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        except FileNotFoundError:
            os.close(fd)
            return None
        return Claim(entry.path, fd, b"".join(chunks))


def _fsync_dir(directory: Path) -> None:
    """Make a rename or removal in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
