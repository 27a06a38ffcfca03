"""The event loop the agent serves on: uvloop's (libuv underneath), not asyncio's own.

One loop thread carries every call's work: the media clock's tick, the caller's audio to the
model and the model's back, each session's WebSocket reads and writes. At 150 calls that is
some 15 000 callbacks and 7 500 socket writes a second, and the per-callback cost of asyncio's
selector loop (its ready queue, timer heap and transport write path, in Python) is a share
of it that libuv's, in C, mostly does without. Measured side by side at 150 calls
(``bench/capacity.py``), the loop thread spent less CPU per call-second on uvloop, and fewer
of the agent's frames came late. The interface is asyncio's: nothing else changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run_serving(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end on a new uvloop event loop (as ``asyncio.run`` would)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    """Which implementation ``loop`` is, for the start-up line: "uvloop" or "asyncio"."""
    return type(loop).__module__.partition(".")[0]
