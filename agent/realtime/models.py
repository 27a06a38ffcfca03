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
#: The GPT-Live model a profile gets with ``realtime.protocol = "live"`` when it names none.
DEFAULT_LIVE_MODEL: Final = "gpt-live-1.1"
#: The GPT-Live models (served on ``/v1/live`` only; the Realtime API does not take them).
LIVE_MODELS: Final = ("gpt-live-1", "gpt-live-1.1")
#: The Responses model that does a GPT-Live call's delegated work (OpenAI's recommendation).
DEFAULT_DELEGATION_MODEL: Final = "gpt-5.6-terra"
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


def is_live_model(model: str) -> bool:
    """True for a GPT-Live model name (or a dated snapshot of one)."""
    name = model.strip()
    return any(name == live or name.startswith(f"{live}-") for live in LIVE_MODELS)


def protocol_warning(model: str, protocol: str) -> str | None:
    """A model sent to the other API: GPT-Live models are not served on the Realtime API and
    Realtime models not on GPT-Live. Unknown names (an Azure deployment) are not judged."""
    name = model.strip()
    if protocol == "live" and (name in DEPRECATED or name.startswith("gpt-realtime")):
        return (
            f"model {name!r} is a Realtime model, but realtime.protocol is 'live': "
            f"GPT-Live sessions need a GPT-Live model such as {DEFAULT_LIVE_MODEL!r} (live.model)"
        )
    if protocol == "realtime" and is_live_model(name):
        return (
            f"model {name!r} is a GPT-Live model, which the Realtime API does not serve: "
            "set realtime.protocol = 'live' (and live.model), or use a Realtime model such as "
            f"{DEFAULT_REALTIME_MODEL!r}"
        )
    return None


def model_warnings(
    models: tuple[str, ...], beta_dialect: bool, protocol: str = "realtime"
) -> list[str]:
    """What to warn about for a configuration using ``models`` (the session's model first,
    then a deployment and the transcription model, in any order; empty names are skipped) on
    ``protocol`` and, when ``beta_dialect``, the deprecated beta dialect."""
    warnings: list[str] = []
    named = [m for m in models if m]
    if named:
        mismatch = protocol_warning(named[0], protocol)
        if mismatch is not None:
            warnings.append(mismatch)
    for name in dict.fromkeys(named):
        notice = deprecation(name)
        if notice is not None:
            warnings.append(notice.warning())
    if beta_dialect:
        warnings.append(BETA_DIALECT_NOTICE)
    return warnings
