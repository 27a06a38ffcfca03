"""What the bridge asks of the model's side, as typed requests: the adapters' input.

A protocol adapter turns each into its wire events (``session.update``, ``response.create``,
``session.start``, ...) in its own protocol and dialect, possibly none: GPT-Live has no
truncation nor cancel, its server owns the conversation. The bridge never builds wire JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Turn:
    """One line of the conversation so far, carried over to a new session: ``role`` is
    "user" (the caller) or "assistant" (the agent), ``text`` what was said (and heard)."""

    role: str
    text: str


@dataclass(frozen=True)
class SessionSpec:
    """A session configuration in no protocol's shape; each adapter gives it its own.

    ``codec`` is the session audio format ("pcm16", "pcm16-16k", "pcmu" or "pcma");
    ``turn_detection`` is the neutral object (``type`` server_vad/semantic_vad and its
    settings) or None for no server VAD; zero/empty values mean "leave the server default".
    ``history`` is the conversation a replacement session starts from. ``model`` and
    ``acknowledgement_delay_ms`` are GPT-Live's (a Realtime session's model is in its URL).
    """

    instructions: str
    voice: str
    codec: str = "pcm16"
    turn_detection: dict[str, Any] | None = None
    transcription_model: str = ""
    noise_reduction: str = ""
    noise_reduction_strength: float = 0.0
    max_output_tokens: int = 0
    temperature: float = 0.0
    speed: float = 1.0
    reasoning_effort: str = ""
    #: "" (server default), "auto", "disabled" or "retention_ratio" (``retention_ratio``).
    truncation: str = ""
    retention_ratio: float = 0.8
    prompt: dict[str, Any] | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    #: Tools the server runs itself (``type: "mcp"``), headers already filled in.
    server_tools: list[dict[str, Any]] = field(default_factory=list)
    history: tuple[Turn, ...] = ()
    model: str = ""
    acknowledgement_delay_ms: int = 0


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
class McpApproval:
    """Our answer to a server-side MCP tool's approval request."""

    item_id: str
    approval_request_id: str
    approve: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CreateItem:
    item: FunctionOutput | Message | McpApproval


@dataclass(frozen=True, slots=True)
class DelegationResult:
    """The outcome of work GPT-Live delegated to us: ``spoken`` for the model to say (it
    paraphrases), else silent context."""

    delegation_id: str
    text: str
    spoken: bool = True


@dataclass(frozen=True, slots=True)
class CloseSession:
    """End the session gracefully (GPT-Live answers with ``session.closed`` and its usage)."""


ClientRequest = (
    ConfigureSession
    | SetAudioFormat
    | AppendAudio
    | Truncate
    | CancelResponse
    | CreateResponse
    | CreateItem
    | DelegationResult
    | CloseSession
)
