"""What a local realtime server answers with: a responder per connection, its VAD and STT.

Two backends ship: ``synthetic`` (a voice-like tone, instant, no models: what the bridge
tests and benchmarks use) and ``voice`` (Silero VAD, Whisper speech-to-text, a rule-based
brain and Piper text-to-speech). The voice backend's parts are imported only when it is built:
the synthetic backend must not pay for the speech stack's imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.local.responder import Responder, Transcriber
from agent.local.synthetic_voice import SyntheticResponder
from agent.local.vad import EnergyVad, VadFactory

if TYPE_CHECKING:
    from agent.local.brain import Brain


@dataclass(frozen=True)
class Backend:
    """The parts a ``LocalRealtimeServer`` builds each connection's protocol from.

    ``warm_up`` starts loading models in the background, so the first call does not wait.
    ``brain`` is the script behind the responder, if it has one: the Responses endpoint asks
    it directly (a text answer needs no speech), and GPT-Live sessions offer its functions.
    """

    name: str
    responder_factory: Callable[[], Responder]
    vad_factory: VadFactory = EnergyVad
    transcriber: Transcriber | None = None
    warm_up: Callable[[], None] | None = None
    brain: Brain | None = None

    @property
    def delegable_tools(self) -> Mapping[str, Mapping[str, Any]]:
        """Every function the brain may call, with empty argument schemas.

        A GPT-Live voice has no tools of its own: it hands the task to the client, which
        knows what it can do. So the voice offers the brain all its functions, and a caller
        asking for one is answered with the intent's reply and a delegation, never with the
        script's "unavailable" line.
        """
        names = self.brain.tool_names() if self.brain is not None else ()
        return {name: {} for name in names}


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
        brain=brain,
    )
