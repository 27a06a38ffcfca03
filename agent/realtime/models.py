"""The speech and transcription models the agent knows, and which of them are going away.

A model that is shut down makes every call fail at the worst moment (a caller on the line), so
the agent warns at start and in ``voice-agent check`` while there is still time to move. The
facts come from the ``openai`` package the project locks (its session models list the
deprecated names with their announced shutdown dates) and from the providers' notices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: The Realtime model a profile gets when it names none.
DEFAULT_REALTIME_MODEL: Final = "gpt-realtime-2.1"
#: Current caller-transcription model, for profiles that want caller turns from a cloud backend.
DEFAULT_TRANSCRIPTION_MODEL: Final = "gpt-realtime-whisper"

#: Dates of the deprecation notices (announced shutdowns).
REALTIME_SHUTDOWN: Final = "2027-01-20"
TRANSCRIPTION_SHUTDOWN: Final = "2027-02-26"


@dataclass(frozen=True)
class Deprecation:
    """A model with an announced shutdown, and what to use instead."""

    model: str
    shutdown: str
    replacement: str

    def warning(self) -> str:
        """One line for logs and ``voice-agent check``."""
        return (
            f"model {self.model!r} is deprecated and shuts down on {self.shutdown}; "
            f"use {self.replacement!r}"
        )


def _deprecated(names: tuple[str, ...], shutdown: str, replacement: str) -> dict[str, Deprecation]:
    return {name: Deprecation(name, shutdown, replacement) for name in names}


#: Every known deprecated name -> its notice. Current realtime models: gpt-realtime-1.5,
#: gpt-realtime-2, gpt-realtime-2.1 and gpt-realtime-2.1-mini.
DEPRECATED: Final[dict[str, Deprecation]] = {
    **_deprecated(
        ("gpt-realtime", "gpt-realtime-2025-08-28"), REALTIME_SHUTDOWN, "gpt-realtime-2.1"
    ),
    **_deprecated(
        ("gpt-realtime-mini", "gpt-realtime-mini-2025-12-15"),
        REALTIME_SHUTDOWN,
        "gpt-realtime-2.1-mini",
    ),
    **_deprecated(
        (
            "whisper-1",
            "gpt-4o-transcribe",
            "gpt-4o-mini-transcribe",
            "gpt-4o-mini-transcribe-2025-12-15",
            "gpt-4o-transcribe-diarize",
        ),
        TRANSCRIPTION_SHUTDOWN,
        DEFAULT_TRANSCRIPTION_MODEL,
    ),
}


def deprecation(model: str) -> Deprecation | None:
    """The shutdown notice of ``model``, or None when it is current (or unknown to us)."""
    return DEPRECATED.get(model.strip())


#: Said wherever the beta dialect is chosen: it still works only where a server answers it.
BETA_DIALECT_NOTICE: Final = (
    "the beta realtime dialect is deprecated: Azure's preview api-version 2025-04-01-preview "
    "since 2026-04-30, and OpenAI switched its beta interface off in 2026-05; use it only for "
    "a deployment that still answers it, and move to the GA dialect"
)


def model_warnings(models: tuple[str, ...], beta_dialect: bool) -> list[str]:
    """What to warn about for a configuration using ``models`` (realtime, deployment,
    transcription, in any order; empty names are skipped) and, when ``beta_dialect``, the
    deprecated beta dialect."""
    warnings: list[str] = []
    for name in dict.fromkeys(m for m in models if m):
        notice = deprecation(name)
        if notice is not None:
            warnings.append(notice.warning())
    if beta_dialect:
        warnings.append(BETA_DIALECT_NOTICE)
    return warnings
