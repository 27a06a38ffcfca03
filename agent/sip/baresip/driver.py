"""The agent's own audio drivers (``source``, ``player``) as the engine holds them: registered
with the running stack before the first call, released after the last."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registration:
    """One driver: ``add`` registers it with the stack and returns 0 and its handle (or an
    errno and None), ``release`` frees that handle; both run on the re thread."""

    def __init__(
        self, add: Callable[[], tuple[int, Any]], release: Callable[[Any], object]
    ) -> None:
        self._add = add
        self._release = release
        self._handle: Any = None

    def register(self) -> int:
        """Make the driver available to calls; 0 or an errno (*re thread*)."""
        if self._handle is not None:
            return 0
        status, handle = self._add()
        if status == 0:
            self._handle = handle
        return status

    def unregister(self) -> None:
        """Take the driver out of the stack's list (*re thread*; after the last call)."""
        if self._handle is not None:
            self._release(self._handle)
            self._handle = None
