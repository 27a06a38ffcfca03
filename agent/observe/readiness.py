"""Whether the agent can take calls now, as named checks: what ``GET /readyz`` reports.

Each check is a function that reads state already there (a flag, a task, the last probe's
result) and returns at once: readiness is asked on the loop that carries the media.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


class Readiness:
    """Ready while every check passes; ``checks()`` says which fail."""

    def __init__(self, checks: Mapping[str, Callable[[], bool]]) -> None:
        self._checks = dict(checks)

    def checks(self) -> dict[str, bool]:
        return {name: bool(check()) for name, check in self._checks.items()}

    @property
    def ready(self) -> bool:
        return all(check() for check in self._checks.values())
