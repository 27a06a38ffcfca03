"""A readers-writer lock between test processes (pytest-xdist workers), on ``flock``.

Most tests share the machine (``shared``); a test that needs it to itself (``exclusive``:
CPU-heavy speech models, millisecond timing assertions) waits until no other test runs,
and no other test starts until it is done. Writers have priority, so an exclusive test is
not starved by a stream of shared ones: every taker first passes a turnstile (a second
lock); a writer holds it while it waits for the machine, so new readers queue behind it.

Locks are ``flock`` on two files in a directory every process sees; the kernel drops them
when a process dies, so a crashed worker never leaves the others stuck.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class MachineShare:
    """The lock files in ``directory``, opened by this process (each process its own)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # flock belongs to the open file description: one per process and file.
        self._machine = os.open(directory / "machine.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._turnstile = os.open(directory / "turnstile.lock", os.O_RDWR | os.O_CREAT, 0o600)
        #: What this process holds: None, or the machine alone (True) or shared (False).
        self.exclusive: bool | None = None

    def take(self, exclusive: bool) -> None:
        """Hold the machine alone (waiting for the running holders to finish, keeping new
        ones out) or shared (waiting while an exclusive holder runs or waits). Taking what is
        already held keeps it."""
        if self.exclusive == exclusive:
            return
        self.release()
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._machine, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)
        self.exclusive = exclusive

    def release(self) -> None:
        if self.exclusive is not None:
            fcntl.flock(self._machine, fcntl.LOCK_UN)
            self.exclusive = None

    def close(self) -> None:
        self.release()
        os.close(self._machine)
        os.close(self._turnstile)
