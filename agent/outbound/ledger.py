"""The per-destination call ledger on disk: what ``max_per_destination_per_day`` counts,
kept across restarts and shared by every process using the same file (``voice-agent call``
next to ``serve``).

Each reservation locks the file (``flock``), reads it, checks and counts the call, and
replaces it atomically (write, fsync, rename), so two processes cannot both take the last
call of the day and a crash leaves the old or the new ledger, never half of one. A ledger
that exists but cannot be read refuses calls rather than starting from zero. Blocking: run
``reserve`` off the loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from agent.outbound.policy import DailyCounts

#: The file name under ``records.dir`` when ``outbound.ledger_file`` is not set.
DEFAULT_NAME = "outbound-ledger.json"


class LedgerError(Exception):
    """The ledger cannot be read or written; ``str()`` says why (one line)."""


class CapReached(Exception):
    """The destination had its day's calls; ``placed`` of them."""

    def __init__(self, placed: int) -> None:
        super().__init__(placed)
        self.placed = placed


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise LedgerError(f"outbound ledger {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)

    def _read(self) -> DailyCounts:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return DailyCounts()
        except OSError as exc:
            raise LedgerError(f"outbound ledger {self.path}: {exc.strerror or exc}") from None
        try:
            return DailyCounts.from_json(json.loads(text))
        except ValueError as exc:
            raise LedgerError(f"outbound ledger {self.path} is not readable: {exc}") from None

    def _write(self, counts: DailyCounts) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with temporary.open("w", encoding="utf-8") as out:
                json.dump(counts.to_json(), out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            raise LedgerError(f"outbound ledger {self.path}: {exc.strerror or exc}") from None

    def placed(self, destination: str, now: float) -> int:
        """Calls to ``destination`` in the 24 hours before ``now``."""
        with self._locked():
            return self._read().placed(destination, now)

    def reserve(self, destination: str, now: float, cap: int) -> int:
        """Count one call to ``destination`` at ``now`` unless it had ``cap`` calls in the
        last 24 hours (``CapReached``; 0 = no cap); returns how many it had before."""
        with self._locked():
            counts = self._read()
            counts.prune(now)
            placed = counts.placed(destination, now)
            if cap and placed >= cap:
                raise CapReached(placed)
            counts.add(destination, now)
            self._write(counts)
            return placed
