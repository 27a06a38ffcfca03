"""The baresip engine's media pacing without a network: the real ``MediaClock`` and
``AudioPump`` on a simulated loop, against a model of baresip's transmit thread (it wakes
every 4 ms and takes one 20 ms frame per ptime, sending nothing when it finds none).

What a caller would notice: a gap in the agent's audio each time the loop stalls past the
frames written ahead. The margin grows after a stall, so recurring stalls stop costing gaps,
and shrinks again once the loop keeps time, so the agent's replies get their latency back.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from agent.sip.baresip import media
from agent.sip.baresip.media import (
    CALM_TICKS,
    MAX_MARGIN_FRAMES,
    PREFILL_FRAMES,
    AudioPump,
    MediaClock,
    TransmitMargin,
)
from agent.sip.engine import SilenceSource

RATE = 8000
FRAME = RATE // 50 * 2


@dataclass
class _Info:
    tx_ready: bool
    tx_buffered: int


@dataclass
class _Stats:
    tx_silence_frames: int


@dataclass
class TransmitThread:
    """baresip's ``Audio TX`` thread and the buffer the pump writes into."""

    buffered: int = 0
    next_send_ms: int = 0
    sent: int = 0
    underruns: int = 0

    def read(self, _size: int) -> bytes:
        return b""

    def write(self, frame: bytes) -> int:
        self.buffered += len(frame)
        return len(frame)

    def flush_tx(self) -> None:
        self.buffered = 0

    def info(self) -> _Info:
        return _Info(True, self.buffered)

    def stats(self) -> _Stats:
        return _Stats(self.underruns)  # what it sent as silence, for want of audio

    def run_until(self, now_ms: int) -> None:
        """Its 4 ms polls up to ``now_ms``: one frame per 20 ms once the first is written."""
        if not self.sent and not self.underruns and self.buffered == 0:
            self.next_send_ms = now_ms  # not started: the first write starts it
            return
        while self.next_send_ms <= now_ms:
            if self.buffered >= FRAME:
                self.buffered -= FRAME
                self.sent += 1
            else:
                self.underruns += 1
            self.next_send_ms += 20


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class SimulatedLoop:
    """``time`` and ``call_at``, as MediaClock uses them; time moves in 1 ms steps, and a
    stall keeps every timer from running until it ends."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self.stalled_until = 0.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def step(self) -> None:
        self.now = round(self.now + 0.001, 6)
        if self.now < self.stalled_until:
            return  # stalled: every timer waits
        while self._timers and self._timers[0].when <= self.now:
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback()


def _one_call() -> tuple[SimulatedLoop, TransmitThread, AudioPump, MediaClock]:
    """A clock serving one call's pump (fed silence) on a simulated loop, started."""
    loop = SimulatedLoop()
    tx = TransmitThread()
    pump = AudioPump(tx, RATE, lambda: None)
    pump.source = SilenceSource(RATE)
    clock = MediaClock()
    clock.pumps["call"] = pump
    clock.start(cast(Any, loop))
    return loop, tx, pump, clock


def _run(seconds: float, stall_every_s: float, stall_ms: int, stop_stalls_at_s: float) -> Any:
    """``stall_ms`` stalls of the loop every ``stall_every_s``, until ``stop_stalls_at_s``."""
    loop, tx, _pump, clock = _one_call()
    depths: list[tuple[float, int]] = []
    steps = int(seconds * 1000)
    stall_every = int(stall_every_s * 1000)
    for ms in range(1, steps + 1):
        if stall_every and ms % stall_every == 0 and ms < stop_stalls_at_s * 1000:
            loop.stalled_until = loop.now + stall_ms / 1000
        loop.step()
        tx.run_until(ms)
        if ms % 20 == 0:
            depths.append((ms / 1000, tx.buffered // FRAME))
    clock.stop()
    return tx, clock, depths


def test_the_margin_grows_on_a_late_tick_and_gives_it_back_when_calm() -> None:
    margin = TransmitMargin()
    assert margin.tick(0.002) == PREFILL_FRAMES == 1
    # 15 ms late: the one frame ahead was nearly gone.
    assert margin.tick(0.015) == 2
    assert margin.tick(0.015) == 2  # within the wider margin now
    assert margin.tick(0.035) == 3
    assert margin.tick(0.5) == MAX_MARGIN_FRAMES == 3
    for _ in range(CALM_TICKS - 1):
        assert margin.tick(0.001) == 3
    assert margin.tick(0.001) == 2
    for _ in range(CALM_TICKS):
        margin.tick(0.001)
    assert margin.frames == 1
    assert margin.raised == 2


def test_recurring_stalls_cost_one_gap_not_one_each(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 50 ms stall every 2 s for 20 s, then 25 s of a loop on time.
    tx, clock, depths = _run(45, stall_every_s=2, stall_ms=50, stop_stalls_at_s=20)
    assert tx.sent > 2200
    assert tx.underruns <= 1, f"{tx.underruns} gaps at the caller"
    assert clock.margin.raised >= 1
    # Calm again: back to one frame ahead (the latency of a loop that keeps time).
    assert clock.margin.frames == PREFILL_FRAMES
    assert max(depth for at, depth in depths if at > 43) <= PREFILL_FRAMES + 1

    # The same stalls with the margin held at one frame: a gap at every stall.
    monkeypatch.setattr(media, "MAX_MARGIN_FRAMES", PREFILL_FRAMES)
    fixed, _, _ = _run(45, stall_every_s=2, stall_ms=50, stop_stalls_at_s=20)
    assert fixed.underruns >= 8, fixed.underruns


def test_a_loop_on_time_keeps_one_frame_ahead_and_never_runs_dry() -> None:
    tx, clock, depths = _run(10, stall_every_s=0, stall_ms=0, stop_stalls_at_s=0)
    assert tx.underruns == 0
    assert clock.margin.raised == 0
    assert {depth for at, depth in depths if at > 1} <= {PREFILL_FRAMES, PREFILL_FRAMES + 1}


def test_silence_the_stack_sent_while_fed_steadily_widens_the_margin() -> None:
    loop, tx, pump, clock = _one_call()

    def run_ms(ms: int) -> None:
        for _ in range(ms):
            loop.step()
            tx.run_until(round(loop.now * 1000))

    run_ms(3000)
    assert clock.margin.frames == PREFILL_FRAMES and pump.dry_spells == 0
    # The thread sent a frame of silence although every tick wrote one (it ran dry).
    tx.underruns += 1
    run_ms(1100)  # the next once-a-second check reads the stack's count
    assert pump.dry_spells == 1 and clock.margin.frames == PREFILL_FRAMES + 1

    # Silence after a flush (a barge-in empties the buffer on purpose) is no reason.
    pump.source.flushes += 1
    run_ms(20)
    tx.underruns += 3
    run_ms(1100)
    assert pump.dry_spells == 1 and clock.margin.frames == PREFILL_FRAMES + 1
    clock.stop()
