"""What a local realtime server answers with: a responder per connection, its VAD and STT.

Two backends ship: ``synthetic`` (a voice-like tone, instant, no models: what the bridge
tests and benchmarks use) and ``voice`` (Silero VAD, Whisper speech-to-text, a rule-based
brain and Piper text-to-speech; built by ``agent.local.voice.voice_backend``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.local.responder import Responder, SyntheticResponder, Transcriber
from agent.local.vad import EnergyVad, VadFactory


@dataclass(frozen=True)
class Backend:
    """The parts a ``LocalRealtimeServer`` builds each connection's protocol from.

    ``warm_up`` starts loading models in the background, so the first call does not wait.
    """

    name: str
    responder_factory: Callable[[], Responder]
    vad_factory: VadFactory = EnergyVad
    transcriber: Transcriber | None = None
    warm_up: Callable[[], None] | None = None


def synthetic_backend() -> Backend:
    """The light backend: energy VAD, no transcription, a synthetic voice."""
    return Backend("synthetic", SyntheticResponder)


def make_backend(name: str, brain: str = "") -> Backend:
    """The backend called ``name`` ("voice" or "synthetic"); ``brain`` is the voice
    backend's script ("" for the shipped one). A bad script raises ``ConfigError``."""
    if name == "synthetic":
        return synthetic_backend()
    if name != "voice":
        raise ValueError(f"unknown local backend {name!r}")
    # Imported here: the synthetic backend must not pay for the speech stack's imports.
    from agent.local.voice import voice_backend

    return voice_backend(Path(brain) if brain else None)
