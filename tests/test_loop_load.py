"""The event loop's load as admission sees it (``agent.observe.loop_load``): the busy share
from the loop thread's CPU time, and the overload state with its hysteresis, on fake clocks;
then one real loop kept busy, and one left idle."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.observe.loop_load import SAMPLE_S, WINDOW_S, LoadWindow, LoopLoad, Overload


def test_busy_is_cpu_time_over_wall_time_in_the_last_second() -> None:
    window = LoadWindow(1.0)
    assert window.busy == 0.0  # no span yet
    cpu = 0.0
    for step in range(9):  # two seconds, every 0.25 s: idle for one, then half busy
        wall = step * 0.25
        if wall > 1.0:
            cpu += 0.125
        window.add(wall, cpu)
    assert window.busy == pytest.approx(0.5)
    window.add(2.25, cpu + 0.25)  # a fully busy quarter second weighs a quarter of the window
    assert window.busy == pytest.approx((0.375 + 0.25) / 1.0)


def test_overload_starts_at_the_limit_and_ends_below_it_with_a_margin() -> None:
    overload = Overload(0.9)
    assert [overload.update(b) for b in (0.5, 0.89, 0.9)] == [False, False, True]
    assert overload.on
    # Hovering just under the limit does not flip it back (no 200/503 every second).
    assert [overload.update(b) for b in (0.85, 0.81, 0.79)] == [False, False, True]
    assert not overload.on
    low = Overload(0.04)  # a low limit recovers half-way to zero
    assert low.update(0.05) and not low.update(0.021) and low.update(0.019)


def test_a_limit_of_one_never_refuses() -> None:
    overload = Overload(1.0)
    assert not overload.update(1.5) and not overload.on


async def _busy_for(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass  # the loop's thread computing, as a loop carrying too many calls does


async def test_a_loop_kept_busy_is_overloaded_and_recovers_when_it_rests() -> None:
    # A low limit: on a machine shared with other tests, the spinning thread may get only
    # part of a core, and busy counts the CPU it got.
    load = LoopLoad(0.3)
    load.start(asyncio.get_running_loop())
    try:
        await asyncio.sleep(WINDOW_S + SAMPLE_S)
        assert not load.overloaded and load.busy < 0.1
        # Busy in slices shorter than a sample, as calls' work is: the sampler runs between.
        for _ in range(int((WINDOW_S + 2 * SAMPLE_S) / 0.05)):
            await _busy_for(0.05)
            await asyncio.sleep(0)
        assert load.overloaded and load.busy > 0.3
        assert load.episodes == 1
        await asyncio.sleep(WINDOW_S + 2 * SAMPLE_S)
        assert not load.overloaded
    finally:
        load.stop()
