"""How busy the event loop's thread is, and whether it has room for one more call.

Every call's audio goes through the loop: the bridge, the resamplers, the WebSocket, and on
the baresip engine the media clock that sends every call's RTP. While the loop's thread has
time to spare, a call's work waits behind the others' for a moment; once it is busy nearly
all the time, every tick comes late, every call's RTP jitters, and past a core's worth the
callers' frames pile up and are dropped, on all the calls at once. One call too many
degrades every call, so admission watches the loop (``AgentApp._admission``): while its
thread has been busier than ``sip.max_loop_busy`` over the last second, new calls get 503
with ``Retry-After`` (OPTIONS too, so a front door takes the agent out of rotation), and
the calls in progress keep the loop to themselves. ``sip.max_calls`` stays the hard cap.

*Busy* is the thread's CPU time over wall time (``time.thread_time``, read on the loop's
own thread by a timer every 250 ms: two clock reads, and only this thread counts, not the
SIP stack's or the local models'). A loop that waits for a core other processes hold is
not busy by this measure, and that is right: its calls are held back by the machine, not by
one more call's work. Overload ends once busy falls ``RECOVERY_MARGIN`` below the limit (or
half-way to zero, for a low limit), so a loop hovering at the limit does not flip between 503
and 200 every second.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import structlog

log = structlog.get_logger("agent")

#: How often the loop's CPU time is read, and over how long busy is measured.
SAMPLE_S = 0.25
WINDOW_S = 1.0
#: Overload ends when busy is this far below the limit (hysteresis), or half the limit's
#: way to zero for a limit below twice this.
RECOVERY_MARGIN = 0.1
#: A limit this high never refuses a call (``sip.max_loop_busy = 1.0`` turns the guard off).
NO_LIMIT = 1.0


class LoadWindow:
    """Busy over the last ``window_s``, from (wall, CPU) samples of one thread (no I/O)."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, wall_s: float, cpu_s: float) -> None:
        samples = self._samples
        samples.append((wall_s, cpu_s))
        # Keep the newest sample at or before the window's start: it is the window's base.
        while len(samples) > 2 and samples[1][0] <= wall_s - self.window_s:
            samples.popleft()

    @property
    def busy(self) -> float:
        """The thread's CPU time over the wall time the samples span; 0.0 before two."""
        if len(self._samples) < 2:
            return 0.0
        (wall0, cpu0), (wall1, cpu1) = self._samples[0], self._samples[-1]
        span = wall1 - wall0
        return (cpu1 - cpu0) / span if span > 0 else 0.0


class Overload:
    """Whether busy is over ``limit``, with hysteresis (no I/O): True from ``busy >= limit``
    until busy falls below ``recover_below``; never with ``limit >= NO_LIMIT``."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.recover_below = limit - min(RECOVERY_MARGIN, limit / 2)
        self.on = False

    def update(self, busy: float) -> bool:
        """The new state; True when it changed."""
        if self.limit >= NO_LIMIT:
            now = False
        elif self.on:
            now = busy >= self.recover_below
        else:
            now = busy >= self.limit
        changed, self.on = now != self.on, now
        return changed


class LoopLoad:
    """The running loop's busy ratio and overload state, sampled by a loop timer."""

    def __init__(
        self,
        limit: float,
        *,
        cpu: Callable[[], float] = time.thread_time,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = LoadWindow()
        self._overload = Overload(limit)
        self._cpu = cpu
        self._wall = wall
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: How many times the loop became overloaded since the start.
        self.episodes = 0

    @property
    def busy(self) -> float:
        return self._window.busy

    @property
    def overloaded(self) -> bool:
        return self._overload.on

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sample on ``loop``, which must be the running loop (its thread is measured)."""
        self._loop = loop
        self._sample()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sample(self) -> None:
        self._window.add(self._wall(), self._cpu())
        busy = self._window.busy
        if self._overload.update(busy):
            # Once per change, not per refused call: a flood of INVITEs logs nothing more.
            if self._overload.on:
                self.episodes += 1
                log.warning("loop_overloaded", busy=round(busy, 3), limit=self._overload.limit)
            else:
                log.info("loop_recovered", busy=round(busy, 3))
        if self._loop is not None:
            self._timer = self._loop.call_later(SAMPLE_S, self._sample)
