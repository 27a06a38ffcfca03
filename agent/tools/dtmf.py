"""The caller's keypad, without I/O: which digits go to the model, which trigger an action.

Digits typed in quick succession (an account number) reach the model as one message, once
``batch`` has passed without another key. A digit the profile maps to an action
(``[tools.dtmf_actions]``, e.g. ``"0" = "transfer_call:human"``) is reserved for it: it acts at
once, without asking the model, and is not part of any batch; digits typed before it are
passed on first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DtmfAction:
    """A built-in tool run for a mapped digit."""

    digit: str
    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)


def parse_action(digit: str, spec: str) -> DtmfAction:
    """``"end_call"`` or ``"transfer_call:<destination>"`` (checked by the config loader)."""
    tool, _, target = spec.partition(":")
    if tool == "transfer_call":
        return DtmfAction(digit, tool, {"destination": target})
    return DtmfAction(digit, tool, {"reason": f"the caller pressed {digit}"})


@dataclass
class DtmfStep:
    """What one key press led to: digits to tell the model now, and an action to run."""

    flush: str | None = None
    action: DtmfAction | None = None


class DtmfCollector:
    def __init__(self, actions: Mapping[str, str], batch: float, to_model: bool = True) -> None:
        """``batch`` is in the unit of the ``now`` given to ``press`` and ``due`` (the
        bridge's milliseconds)."""
        self.actions = {digit: parse_action(digit, spec) for digit, spec in actions.items()}
        self.batch = batch
        self.to_model = to_model
        self._pending = ""
        self._deadline: float | None = None

    def press(self, digit: str, now: float) -> DtmfStep:
        digit = digit.upper()
        action = self.actions.get(digit)
        if action is not None:
            return DtmfStep(self._take(), action)
        if self.to_model:
            self._pending += digit
            self._deadline = now + self.batch
        return DtmfStep()

    def due(self, now: float) -> str | None:
        """The batch to tell the model, once no key came for ``batch``."""
        if self._deadline is None or now < self._deadline:
            return None
        return self._take()

    @property
    def next_deadline(self) -> float | None:
        return self._deadline

    def _take(self) -> str | None:
        digits, self._pending, self._deadline = self._pending, "", None
        return digits or None


def pressed_text(digits: str) -> str:
    """The conversation message for keys the caller pressed."""
    # Spaced out, so "123" reads as three key presses and not as a number spoken aloud.
    return f"The caller pressed {' '.join(digits)} on the phone keypad."
