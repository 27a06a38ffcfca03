"""The media clock's beat on real event loops (uvloop's, as ``serve`` runs, and asyncio's):
one beat per 20 ms period, none lost when the loop is held up (the next call says how many
periods passed, so the frames owed are sent), and nothing after ``stop``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import pytest
import uvloop

from agent.audio.metronome import KernelTimer, LoopTimer, Metronome, media_metronome

PERIOD_S = 0.020

TIMERS: list[Callable[[float], Metronome]] = [LoopTimer]
if KernelTimer.available():
    TIMERS.append(KernelTimer)
LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _beats_around_a_stall(metronome: Metronome) -> tuple[list[int], float, int, int]:
    """Every call's beat count over about 0.4 s with the loop blocked for 70 ms in the
    middle; the periods that passed meanwhile; the calls that came after ``stop``; the
    descriptors it left open."""
    loop = asyncio.get_running_loop()
    calls: list[int] = []
    fds_before = _open_fds()
    started = time.monotonic()
    metronome.start(loop, calls.append)
    await asyncio.sleep(0.2)
    time.sleep(0.070)  # the loop is held up: three or four periods pass unserved
    await asyncio.sleep(0.2)
    metronome.stop()
    elapsed_periods = (time.monotonic() - started) / PERIOD_S
    at_stop = len(calls)
    await asyncio.sleep(0.1)  # a beat after stop would land here
    return calls, elapsed_periods, len(calls) - at_stop, _open_fds() - fds_before


@pytest.mark.parametrize("loop_kind", LOOPS)
@pytest.mark.parametrize("timer", TIMERS, ids=lambda t: t.name)
def test_a_beat_every_period_and_a_stall_owes_the_periods_it_held_up(
    timer: Callable[[float], Metronome], loop_kind: str
) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_kind]) as runner:
        calls, elapsed_periods, after_stop, fds_left = runner.run(
            _beats_around_a_stall(timer(PERIOD_S))
        )
    # Every period was counted once: none lost to the stall, none made up.
    assert abs(sum(calls) - elapsed_periods) <= 1.5, (sum(calls), elapsed_periods)
    # The call after the stall carries the periods it held up, so their frames go out.
    assert max(calls) >= 3
    # Nothing came after stop, and the kernel timer's descriptor is closed.
    assert after_stop == 0 and fds_left == 0


def test_on_linux_the_media_clock_beats_from_the_kernel() -> None:
    expected = "kernel" if os.uname().sysname == "Linux" else "loop"
    assert media_metronome(PERIOD_S).name == expected
