"""What a local realtime server answers with: a responder per connection, its VAD and STT.

Two backends ship: ``synthetic`` (a voice-like tone, instant, no models: what the bridge
tests and benchmarks use) and ``voice`` (Silero VAD, Whisper speech-to-text, a rule-based
brain and Piper text-to-speech). The voice backend's parts are imported only when it is built:
the synthetic backend must not pay for the speech stack's imports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.local.responder import Responder, Transcriber
from agent.local.synthetic_voice import SyntheticResponder
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
    return voice_backend(Path(brain) if brain else None)


def voice_backend(brain_path: Path | None = None) -> Backend:
    """The voice backend with the script at ``brain_path`` (default: the shipped one).

    The script is read now, so a bad one fails at start-up; models load on ``warm_up``.
    """
    from agent.local.brain import load_brain
    from agent.local.models import voice_executor, voice_models
    from agent.local.silero_vad import silero_vad_factory
    from agent.local.voice import VoiceResponder, WhisperTranscriber

    brain = load_brain(brain_path)
    models = voice_models()
    executor = voice_executor()
    return Backend(
        name="voice",
        responder_factory=lambda: VoiceResponder(brain, models, executor),
        vad_factory=silero_vad_factory,
        transcriber=WhisperTranscriber(models, executor),
        warm_up=models.warm_up,
    )
