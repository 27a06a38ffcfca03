"""When a failed delivery is tried again: soon at first, then ever less often, capped."""

from __future__ import annotations

import random
from collections.abc import Callable

#: Each wait is stretched by up to this share at random, so that deliveries that failed
#: together (a receiver that was down) do not all come back in the same second.
JITTER = 0.1


def retry_delay(
    failures: int,
    first_s: float,
    max_s: float,
    *,
    jitter: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1 = the first).

    ``first_s``, then doubling (2, 4, 8, ... s with the defaults) up to ``max_s``; ``jitter``
    returns 0..1 and adds up to ``JITTER`` of the wait (never beyond ``max_s``).
    """
    if failures < 1:
        return 0.0
    # Capping the exponent keeps the arithmetic finite for deliveries retried for days.
    base = min(max_s, first_s * 2.0 ** min(failures - 1, 60))
    return min(max_s, base * (1.0 + JITTER * jitter()))
