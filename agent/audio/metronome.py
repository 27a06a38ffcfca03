"""The periodic beat of a media clock on the event loop: a kernel timer where there is one.

A media clock sends calls' next RTP packets on its beats, so a beat that comes late or
early is jitter every caller hears in their jitter buffer. An asyncio timer is a poor beat on
uvloop: libuv keeps timers in whole milliseconds against a loop time read once per
iteration, so an idle loop's 20 ms timer already fires 0.3 ms off at p50 and 0.8 ms at p99
(``bench/pacing.py``). A Linux ``timerfd`` is the kernel's own periodic timer: the loop waits
on its descriptor like on any socket, it becomes readable at the deadline to the microsecond,
and reading it says how many periods have passed, so a loop held up for three periods
learns it owes three beats without keeping a schedule of its own. Where there is none (not
Linux), the loop timer does the job with the same contract.

Contract: ``start(loop, on_beats)`` calls ``on_beats(n)`` on the loop thread once per period,
``n`` being the periods that passed since the previous call (1 on time, more after a stall);
the grid is absolute, so the beat never drifts. ``stop()`` ends it; no call follows.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time
from collections.abc import Callable
from typing import Protocol

#: What a metronome calls: with the number of periods since its previous call.
OnBeats = Callable[[int], None]

# <sys/timerfd.h>: the flags are O_NONBLOCK / O_CLOEXEC by definition.
_TFD_TIMER_ABSTIME = 1


class Metronome(Protocol):
    """A periodic beat on the loop: see the module docstring."""

    name: str

    def start(self, loop: asyncio.AbstractEventLoop, on_beats: OnBeats) -> None: ...

    def stop(self) -> None: ...


class LoopTimer:
    """The beat from the loop's own timers (``call_at`` at absolute deadlines)."""

    name = "loop"

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_beats: OnBeats | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._next = 0.0

    def start(self, loop: asyncio.AbstractEventLoop, on_beats: OnBeats) -> None:
        self._loop, self._on_beats = loop, on_beats
        self._next = loop.time() + self.period_s
        self._timer = loop.call_at(self._next, self._beat)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _beat(self) -> None:
        loop, on_beats = self._loop, self._on_beats
        assert loop is not None and on_beats is not None
        beats = 1 + max(0, int((loop.time() - self._next) / self.period_s))
        self._next += beats * self.period_s
        self._timer = loop.call_at(self._next, self._beat)
        on_beats(beats)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # The process's own symbols include libc's (no search for the library's file).
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class KernelTimer:
    """The beat from a Linux ``timerfd`` (CLOCK_MONOTONIC, periodic, absolute)."""

    name = "kernel"

    def __init__(self, period_s: float) -> None:
        if _LIBC is None:
            raise OSError("timerfd is Linux's; this system has none")
        self.period_ns = round(period_s * 1e9)
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_beats: OnBeats | None = None

    @staticmethod
    def available() -> bool:
        return _LIBC is not None

    def start(self, loop: asyncio.AbstractEventLoop, on_beats: OnBeats) -> None:
        assert _LIBC is not None
        fd = _LIBC.timerfd_create(time.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create: " + os.strerror(ctypes.get_errno()))
        first = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + self.period_ns
        spec = _Itimerspec(
            _Timespec(*divmod(self.period_ns, 1_000_000_000)),
            _Timespec(*divmod(first, 1_000_000_000)),
        )
        if _LIBC.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, "timerfd_settime: " + os.strerror(err))
        self._fd, self._loop, self._on_beats = fd, loop, on_beats
        loop.add_reader(fd, self._readable)

    def stop(self) -> None:
        if self._fd < 0:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1

    def _readable(self) -> None:
        try:
            expirations = os.read(self._fd, 8)
        except BlockingIOError:
            return  # woken with nothing to read: the next expiry will say
        beats = int.from_bytes(expirations, sys.byteorder)
        if beats and self._on_beats is not None:
            self._on_beats(beats)


def media_metronome(period_s: float) -> Metronome:
    """The most precise beat this system has: a kernel timer on Linux, else the loop's."""
    if KernelTimer.available():
        return KernelTimer(period_s)
    return LoopTimer(period_s)
