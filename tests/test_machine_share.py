"""The lock that lets ``exclusive`` tests run alone under pytest-xdist (testbed/machine_share).

Each holder is its own ``MachineShare`` (its own open files, as each worker process has), on
a thread of its own so that a blocked one can be watched; one holder is a real process.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.machine_share import MachineShare
from testbed.peers import REPO

BLOCKED_S = 0.3  # how long a waiter is watched to stay blocked
BOUND_S = 10.0  # every wait in these tests ends by then


class Holder:
    """A thread taking the machine (alone or shared) through ``share``, keeping it until
    ``release``."""

    def __init__(self, share: MachineShare, exclusive: bool, log: list[str], name: str) -> None:
        self.holding = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(share, exclusive, log, name), daemon=True
        )
        self._thread.start()

    def _run(self, share: MachineShare, exclusive: bool, log: list[str], name: str) -> None:
        share.take(exclusive)
        log.append(name)
        self.holding.set()
        assert self._release.wait(BOUND_S)
        share.release()

    def release(self) -> None:
        self._release.set()
        self._thread.join(BOUND_S)
        assert not self._thread.is_alive()


@pytest.fixture
def shares(tmp_path: Path) -> Iterator[list[MachineShare]]:
    opened = [MachineShare(tmp_path) for _ in range(3)]
    yield opened
    for share in opened:
        share.close()


def test_shared_holders_run_side_by_side(shares: list[MachineShare]) -> None:
    log: list[str] = []
    first = Holder(shares[0], False, log, "first")
    second = Holder(shares[1], False, log, "second")
    assert first.holding.wait(BOUND_S) and second.holding.wait(BOUND_S)
    first.release()
    second.release()


def test_an_exclusive_holder_waits_for_the_running_ones_and_keeps_new_ones_out(
    shares: list[MachineShare],
) -> None:
    log: list[str] = []
    running = Holder(shares[0], False, log, "running")
    assert running.holding.wait(BOUND_S)
    writer = Holder(shares[1], True, log, "writer")
    assert not writer.holding.wait(BLOCKED_S)
    # A shared holder arriving while the writer waits queues behind it (writer priority).
    late = Holder(shares[2], False, log, "late")
    assert not late.holding.wait(BLOCKED_S)
    running.release()
    assert writer.holding.wait(BOUND_S)
    assert not late.holding.wait(BLOCKED_S)  # the writer runs alone
    writer.release()
    assert late.holding.wait(BOUND_S)
    late.release()
    assert log == ["running", "writer", "late"]


def test_a_dead_process_leaves_the_machine_free(shares: list[MachineShare], tmp_path: Path) -> None:
    # A worker that dies (killed by a timeout, crashed) while running alone.
    code = (
        "import sys, time; from pathlib import Path; from testbed.machine_share import "
        "MachineShare\nMachineShare(Path(sys.argv[1])).take(exclusive=True)\n"
        "print('holding', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "holding\n"
        log: list[str] = []
        waiter = Holder(shares[0], False, log, "waiter")
        assert not waiter.holding.wait(BLOCKED_S)
        child.kill()
        assert waiter.holding.wait(BOUND_S)
        waiter.release()
    finally:
        child.kill()
        child.wait(BOUND_S)


def test_taking_what_is_held_keeps_it_and_a_change_goes_through_the_queue(
    shares: list[MachineShare],
) -> None:
    # One exclusive test after another keeps the machine: a waiting reader never gets in.
    shares[0].take(exclusive=True)
    log: list[str] = []
    reader = Holder(shares[1], False, log, "reader")
    assert not reader.holding.wait(BLOCKED_S)
    shares[0].take(exclusive=True)
    assert not reader.holding.wait(BLOCKED_S)
    # Back to shared: the reader, already waiting, gets in beside it.
    shares[0].take(exclusive=False)
    assert reader.holding.wait(BOUND_S)
    assert shares[0].exclusive is False
    reader.release()
    shares[0].release()
