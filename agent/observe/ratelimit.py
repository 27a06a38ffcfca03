"""Rate limits for log lines: a flood of bad packets must not become a flood of log.

A line per kind of event is let through at most once per interval; what was held back is
counted and reported with the next line of that kind, so nothing is hidden, only summarised.
The number of distinct keys is bounded: a scanner that varies every field cannot grow the
table without limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

#: Longest text of a datagram or message quoted in a log line.
QUOTE_CHARS = 160


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, on one line, saying how much was cut."""
    flat = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}… [{len(flat) - limit} more]"


class KeyedRateLimit:
    """At most one line per key per ``interval_s``; the rest are counted."""

    def __init__(
        self,
        interval_s: float,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._clock = clock
        self._last: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def allow(self, key: Hashable) -> bool:
        """True when a line for ``key`` may be written now."""
        return self.check(key)[0]

    def check(self, key: Hashable) -> tuple[bool, int]:
        """(may write now, lines held back since the last one written for ``key``)."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return False, 0
        held = last[1] if last is not None else 0
        self._last[key] = (now, 0)
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return True, held
