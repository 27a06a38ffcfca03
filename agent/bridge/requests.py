"""What the bridge asks of the model's side, as typed requests: the adapters' input.

A protocol adapter turns each into its wire event (``session.update``, ``response.create``,
...) in its own dialect; the bridge never builds wire JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SessionSpec:
    """A session configuration in no dialect's shape; each adapter gives it its own.

    ``codec`` is the session audio format ("pcm16", "pcmu" or "pcma"); ``turn_detection`` is
    the neutral object (``type`` server_vad/semantic_vad and its settings) or None for no
    server VAD; zero/empty values mean "leave the server default".
    """

    instructions: str
    voice: str
    codec: str = "pcm16"
    turn_detection: dict[str, Any] | None = None
    transcription_model: str = ""
    noise_reduction: str = ""
    max_output_tokens: int = 0
    temperature: float = 0.0
    prompt: dict[str, Any] | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ConfigureSession:
    spec: SessionSpec


@dataclass(frozen=True, slots=True)
class SetAudioFormat:
    """Change only the session's audio format (G.711 passthrough, once the codec is known)."""

    codec: str


@dataclass(frozen=True, slots=True)
class AppendAudio:
    """Caller audio in the session's codec."""

    audio: bytes


@dataclass(frozen=True, slots=True)
class Truncate:
    """Cut ``item_id``'s audio at what the caller heard."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class CancelResponse:
    pass


@dataclass(frozen=True, slots=True)
class CreateResponse:
    """Ask for a response: with ``instructions`` for this one (a greeting), and a ``tag``
    the server echoes in ``response.created`` so the bridge knows it asked for it."""

    instructions: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionOutput:
    item_id: str
    call_id: str
    output: str


@dataclass(frozen=True, slots=True)
class Message:
    """A text message in the conversation (``role`` user or system)."""

    item_id: str
    role: str
    text: str


@dataclass(frozen=True, slots=True)
class CreateItem:
    item: FunctionOutput | Message


ClientRequest = (
    ConfigureSession
    | SetAudioFormat
    | AppendAudio
    | Truncate
    | CancelResponse
    | CreateResponse
    | CreateItem
)
