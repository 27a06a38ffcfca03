"""The baresip engine's media pacing without a network: the real ``MediaClock`` and
``AudioPump`` on a simulated loop, against a model of the call's audio source (which sends
each frame written as the call's RTP at once, ``agent.sip.baresip.source``).

What a caller would notice: a frame of the agent's audio every 20 ms while the loop keeps
time; after a stall, the frames it owed at once and in order (late, never lost); nothing
sent while the call is held, and none of the agent's audio spent before the stack can send.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from agent.audio.metronome import LoopTimer
from agent.sip.baresip.media import CARRY_CHUNK, PHASES, RESYNC_TICKS, AudioPump, MediaClock
from agent.sip.engine import SilenceSource

RATE = 8000
FRAME = RATE // 50 * 2


class Numbered(SilenceSource):
    """A frame source whose every frame says which it is (its first two bytes)."""

    def __init__(self) -> None:
        super().__init__(RATE)
        self.pulled = 0

    def pull(self) -> bytes:
        self.pulled += 1
        return self.pulled.to_bytes(2, "little") + bytes(FRAME - 2)


@dataclass
class Wire:
    """The call's source as the pump sees it: each write is one packet on the wire now."""

    loop: SimulatedLoop
    ready_now: bool = True
    sent: list[tuple[float, int]] = field(default_factory=list)
    dropped_pending: int = 0

    def read(self, _size: int) -> bytes:
        return b""

    def write(self, frame: bytes) -> int:
        self.sent.append((self.loop.now, int.from_bytes(frame[:2], "little")))
        return len(frame)

    def ready(self) -> bool:
        return self.ready_now

    def drop_pending(self) -> None:
        self.dropped_pending += 1

    def stats(self) -> dict[str, int]:
        return {}


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
        self._ready: list[Callable[[], None]] = []
        self.iterations = 0

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._ready.append(callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def step(self) -> None:
        self.now = round(self.now + 0.001, 6)
        if self.now < self.stalled_until:
            return  # stalled: every timer waits
        # As asyncio's loops do: each iteration runs the timers due, then the callbacks ready
        # when it began (those they add wait for the next iteration).
        while True:
            # A deadline of sums of 20 ms is due at its millisecond (no float's 1e-17 past it).
            while self._timers and self._timers[0].when <= self.now + 1e-9:
                timer = heapq.heappop(self._timers)
                if not timer.cancelled:
                    timer.callback()
            ready, self._ready = self._ready, []
            for callback in ready:
                callback()
            self.iterations += 1
            if not self._ready:
                return


def _one_call() -> tuple[SimulatedLoop, Wire, AudioPump, MediaClock]:
    """A clock serving one call's pump (fed numbered frames) on a simulated loop, started."""
    loop = SimulatedLoop()
    wire = Wire(loop)
    pump = AudioPump(wire, RATE, lambda: None)
    pump.source = Numbered()
    clock = MediaClock(LoopTimer)
    clock.add("call", pump)
    clock.start(cast(Any, loop))
    return loop, wire, pump, clock


def _run(loop: SimulatedLoop, ms: int) -> None:
    for _ in range(ms):
        loop.step()


def test_a_loop_on_time_sends_one_frame_every_20_ms() -> None:
    loop, wire, _pump, clock = _one_call()
    _run(loop, 2000)
    times = [at for at, _ in wire.sent]
    assert len(times) == 100
    assert {round((b - a) * 1000) for a, b in itertools.pairwise(times)} == {20}
    assert [number for _, number in wire.sent] == list(range(1, 101))
    assert clock.late_ticks == 0


def test_after_a_stall_the_frames_owed_go_out_at_once_and_in_order() -> None:
    loop, wire, _pump, clock = _one_call()
    _run(loop, 1000)
    # The call's phase beats at 5 ms past each 20 ms: a stall to 1.06 holds up three ticks
    # (1.005, 1.025, 1.045); the next, at 1.065, is on time again.
    loop.stalled_until = loop.now + 0.060
    _run(loop, 1000)
    numbers = [number for _, number in wire.sent]
    # Two seconds of audio, none of it lost or reordered.
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) == 100
    burst = [at for at, _ in wire.sent if abs(at - 1.060) < 0.0005]
    assert len(burst) == 3  # the three owed, at 1.06
    assert any(abs(at - 1.065) < 0.0005 for at, _ in wire.sent)
    assert clock.late_ticks == 2


def test_a_loop_stalled_past_the_resync_starts_its_schedule_again() -> None:
    loop, wire, _pump, clock = _one_call()
    _run(loop, 200)
    loop.stalled_until = loop.now + (RESYNC_TICKS + 5) * 0.020
    _run(loop, 1000)
    # The stall's frames are not sent in a burst the far end would drop anyway.
    assert max(sum(1 for at, _ in wire.sent if abs(at - t) < 0.0005) for t, _ in wire.sent) == 1
    assert clock.late_ticks >= RESYNC_TICKS


def test_nothing_is_pulled_before_the_stack_can_send_nor_while_held() -> None:
    loop, wire, pump, _clock = _one_call()
    source = cast(Numbered, pump.source)
    wire.ready_now = False
    _run(loop, 200)
    assert source.pulled == 0 and not wire.sent  # the greeting waits, whole
    wire.ready_now = True
    _run(loop, 200)
    assert [number for _, number in wire.sent][:1] == [1]
    pump.held = True
    pulled = source.pulled
    _run(loop, 500)
    assert source.pulled == pulled
    pump.held = False
    _run(loop, 100)
    assert source.pulled == pulled + 5


def test_a_barge_in_drops_what_the_stack_holds_of_a_longer_packet_once() -> None:
    loop, wire, pump, clock = _one_call()
    _run(loop, 100)
    pump.source.flushes += 1
    _run(loop, 100)
    assert wire.dropped_pending == 1
    clock.stop()


def test_the_callers_frames_go_on_a_few_calls_per_iteration_after_their_phases_rtp() -> None:
    loop = SimulatedLoop()
    wires = [Wire(loop) for _ in range(40)]
    carried: list[tuple[int, int, float]] = []  # (call, loop iteration, time)
    clock = MediaClock(LoopTimer)
    for number, wire in enumerate(wires):

        def on_frames(number: int = number) -> None:
            carried.append((number, loop.iterations, loop.now))

        pump = AudioPump(wire, RATE, on_frames)
        pump.source = Numbered()
        clock.add(str(number), pump)
    clock.start(cast(Any, loop))
    _run(loop, 100)  # five ticks of each phase; silence stands in from the third on
    # The fifth tick of the first phase (at 85 ms): its ten calls, and no other.
    tick = [entry for entry in carried if abs(entry[2] - 0.085) < 0.0005]
    # Every call of the phase once, in order, CARRY_CHUNK per iteration: a beat due meanwhile
    # would run between two of them, not behind all ten.
    assert [number for number, _, _ in tick] == list(range(0, 40, PHASES))
    per_iteration = [
        len([1 for _, it, _ in tick if it == iteration])
        for iteration in sorted({it for _, it, _ in tick})
    ]
    whole, rest = divmod(40 // PHASES, CARRY_CHUNK)
    assert per_iteration == [CARRY_CHUNK] * whole + ([rest] if rest else [])


def test_each_beat_sends_its_calls_rtp_before_reading_their_callers_audio() -> None:
    loop = SimulatedLoop()
    order: list[str] = []

    class Logged(Wire):
        def read(self, size: int) -> bytes:
            order.append("read")
            return super().read(size)

        def write(self, frame: bytes) -> int:
            order.append("write")
            return super().write(frame)

    clock = MediaClock(LoopTimer)
    for number in range(20):
        pump = AudioPump(Logged(loop), RATE, lambda: None)
        pump.source = Numbered()
        clock.add(str(number), pump)
    clock.start(cast(Any, loop))
    _run(loop, 100)  # twenty beats, five of each phase
    # Within each beat, its five calls' sends, then their five reads: a packet's time on the
    # wire does not depend on how much the calls before it had to read.
    assert order == (["write"] * 5 + ["read"] * 5) * 20


def test_calls_are_spread_over_the_phases_and_each_keeps_its_20_ms_spacing() -> None:
    loop = SimulatedLoop()
    clock = MediaClock(LoopTimer)
    wires = {str(number): Wire(loop) for number in range(8)}
    for call_id, wire in wires.items():
        pump = AudioPump(wire, RATE, lambda: None)
        pump.source = Numbered()
        clock.add(call_id, pump)
    clock.start(cast(Any, loop))
    _run(loop, 1000)
    offsets = {}
    for call_id, wire in wires.items():
        times = [at for at, _ in wire.sent]
        assert len(times) == 50
        assert {round((b - a) * 1000) for a, b in itertools.pairwise(times)} == {20}
        offsets[call_id] = round(times[0] * 1000) % 20
    # Two calls on each of the four phases, 5 ms apart.
    assert sorted(offsets.values()) == [0, 0, 5, 5, 10, 10, 15, 15]
    # A call that ends frees its phase: the next call to join is served there, 20 ms apart
    # from the call that shares it and 5 ms from the others.
    clock.remove("1")
    joining = Wire(loop)
    pump = AudioPump(joining, RATE, lambda: None)
    pump.source = Numbered()
    clock.add("new", pump)
    assert clock.pumps.keys() == (set(wires) - {"1"}) | {"new"}
    _run(loop, 100)
    assert len(joining.sent) == 5
    assert round(joining.sent[0][0] * 1000) % 20 == offsets["1"]
