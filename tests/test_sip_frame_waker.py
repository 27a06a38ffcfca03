"""FrameWaker: the media clock wakes the event loop once per tick, never missing a frame."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator

import pytest

from agent.sip.pjsip.media_port import FrameWaker


@pytest.fixture
def waker() -> Iterator[FrameWaker]:
    w = FrameWaker()
    yield w
    w.close()


def _wakeups(waker: FrameWaker) -> int:
    """Bytes waiting in the pipe (each is one wake-up of the loop)."""
    if not select.select([waker.fileno()], [], [], 0)[0]:
        return 0
    return len(os.read(waker.fileno(), 512))


def test_one_wakeup_when_the_last_frame_of_a_tick_arrives(waker: FrameWaker) -> None:
    for _ in range(3):  # the bridge reads three ports...
        waker.frame_requested()
    waker.frame_arrived()  # ...then writes them
    waker.frame_arrived()
    assert _wakeups(waker) == 0  # the loop would wake while the clock still needs the GIL
    waker.frame_arrived()
    assert _wakeups(waker) == 1


def test_no_second_byte_until_the_loop_consumed(waker: FrameWaker) -> None:
    for _ in range(2):  # two ticks while the loop is busy
        waker.frame_requested()
        waker.frame_arrived()
    assert _wakeups(waker) == 1
    waker.consume()
    assert not waker.pending
    waker.frame_requested()
    waker.frame_arrived()
    assert _wakeups(waker) == 1


def test_a_frame_nobody_requested_is_announced_by_the_next_tick(waker: FrameWaker) -> None:
    waker.frame_requested()
    waker.frame_requested()  # a port that is read but gets no frame (being set up)
    waker.frame_arrived()
    assert _wakeups(waker) == 0
    waker.frame_requested()  # the next tick begins: announce what is waiting
    assert _wakeups(waker) == 1


def test_consume_drains_and_close_is_idempotent(waker: FrameWaker) -> None:
    waker.frame_arrived()
    waker.consume()
    assert _wakeups(waker) == 0
    waker.close()
    waker.frame_arrived()  # after close: no error, nothing to wake
    waker.consume()
