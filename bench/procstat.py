"""CPU time and memory of processes and their threads, from /proc (Linux).

CPU comes from ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds on CPU, user and system
together, per thread), not from ``stat``'s 10 ms clock ticks: a call costs a few ms of CPU
per second, and a window of a few seconds must still resolve it. Memory is RSS from
``statm`` and PSS from ``smaps_rollup`` (shared library pages divided among the processes
that map them, which is what many agent processes really cost together).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcSample:
    """One process at one moment: CPU ns per thread (main thread under the pid), RSS bytes."""

    pid: int
    threads_ns: dict[int, int]
    rss: int

    @property
    def cpu_ns(self) -> int:
        return sum(self.threads_ns.values())

    @property
    def main_ns(self) -> int:
        return self.threads_ns.get(self.pid, 0)


def _thread_ns(pid: int, tid: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text()
    except OSError:
        return None  # the thread ended between listing and reading
    return int(text.split()[0])


def sample(pid: int) -> ProcSample | None:
    """The process now, or None when it is gone."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
        resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return None
    threads: dict[int, int] = {}
    for tid in tids:
        ns = _thread_ns(pid, tid)
        if ns is not None:
            threads[int(tid)] = ns
    return ProcSample(pid, threads, resident)


def pss_bytes(pid: int) -> int:
    """Proportional set size (0 when unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def all_tasks_ns() -> dict[tuple[int, int], int]:
    """CPU ns of every thread on the machine, by (pid, tid).

    The machine-wide counters of ``/proc/stat`` are sampled at the scheduler tick, and a
    workload that wakes for 100 us every 20 ms can alias with the tick and all but vanish
    from them; per-thread ``schedstat`` is exact. Threads that come and go between two
    snapshots are missed, so differences are a lower bound.
    """
    tasks: dict[tuple[int, int], int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            ns = _thread_ns(int(pid), tid)
            if ns is not None:
                tasks[(int(pid), int(tid))] = ns
    return tasks


def tasks_delta_ns(
    before: dict[tuple[int, int], int], after: dict[tuple[int, int], int], exclude: set[int]
) -> int:
    """CPU ns spent between two ``all_tasks_ns`` snapshots by threads outside ``exclude``."""
    return sum(
        ns - before[key] for key, ns in after.items() if key in before and key[0] not in exclude
    )


def thread_delta_ns(before: ProcSample, after: ProcSample) -> tuple[int, int]:
    """(main thread, other threads) CPU ns spent between two samples of one process."""
    main = after.main_ns - before.main_ns
    others = sum(
        ns - before.threads_ns.get(tid, 0)
        for tid, ns in after.threads_ns.items()
        if tid != after.pid
    )
    return main, others
