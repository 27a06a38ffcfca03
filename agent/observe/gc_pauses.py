"""The garbage collector's pauses: kept short, and measured.

Every call's audio is paced from the one event loop (the baresip engine's media ticker), and
a collection stops that loop, so every call's audio at once, for as long as it runs. A full
collection walks every object the collector tracks, and most of those are the program
itself: modules, the ``openai`` package's pydantic models, the engines, all made at start and
never freed. At 150 calls on baresip one took 117 ms (``bench/capacity.py``), longer than
the frames kept ahead of the wire, so each of those pauses cost every call about six frames.

``settle`` collects once after start and freezes what survives (``gc.freeze``: later
collections skip it); the longest pause of the same run fell to 34 ms. ``GcPauses`` times
every collection into a histogram and logs one that stopped the loop for longer than
``LONG_PAUSE_S`` (at most once a minute, with how many more there were).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import structlog

from agent.observe.ratelimit import KeyedRateLimit

log = structlog.get_logger("agent")

#: A pause this long costs the callers audio (the baresip engine keeps 20-60 ms ahead).
LONG_PAUSE_S = 0.05
LOG_INTERVAL_S = 60.0


def settle() -> int:
    """Collect what start-up left behind, then freeze the rest; how many objects froze."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses:
    """Times each collection (``gc.callbacks``) into ``observe(seconds, generation)``."""

    def __init__(
        self,
        observe: Callable[[float, int], None],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._observe = observe
        self._clock = clock
        self._started = 0.0
        self._limit = KeyedRateLimit(LOG_INTERVAL_S)

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        seconds = self._clock() - self._started
        generation = int(info.get("generation", 0))
        self._observe(seconds, generation)
        if seconds > LONG_PAUSE_S:
            allowed, held = self._limit.check("long")
            if allowed:
                log.warning(
                    "gc_pause_long",
                    ms=round(seconds * 1e3, 1),
                    generation=generation,
                    more_since_last=held,
                )
