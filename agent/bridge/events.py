"""What the model's side says, as typed internal events: the bridge's input vocabulary.

A protocol adapter (``agent.realtime.adapter`` for the Realtime GA and beta dialects,
``agent.live.adapter`` for GPT-Live) parses each wire event once, at the edge, into these;
the bridge never sees a protocol, a dialect, a wire name or a base64 string. Wire events that
matter to no decision of the call have no internal event and are dropped by the adapter.
GPT-Live has no responses or items: its adapter numbers the agent's and the caller's turns
itself and speaks the same vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SessionReady:
    """The session took our configuration (``session.updated``, ``session.started``);
    ``expires_at`` is when the server will end it (Unix seconds), when it says."""

    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class AudioDelta:
    """Agent audio for ``item_id`` of ``response_id``, in the session's codec (decoded).

    ``voiced`` False: a quiet stretch of a GPT-Live turn's media track (a pause between
    words), played to keep the turn's timing but no sign that the model is still talking
    (what ``barge_in.YieldWatch`` asks)."""

    response_id: str
    item_id: str
    audio: bytes
    voiced: bool = True


@dataclass(frozen=True, slots=True)
class AudioDone:
    """The model sent all audio of ``item_id``."""

    item_id: str


@dataclass(frozen=True, slots=True)
class AgentItemStarted:
    """The model began an assistant message ``item_id`` of ``response_id``. Over WebRTC its
    audio comes on the media track, which carries no ids: this names what the track plays."""

    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class TrackAudio:
    """Agent audio from the WebRTC media track (PCM16 at the track's 48 kHz), not yet
    attributed to an item (see ``agent.bridge.track``)."""

    audio: bytes


@dataclass(frozen=True, slots=True)
class PlayoutStarted:
    """WebRTC: the server began streaming ``response_id``'s audio on the track."""

    response_id: str


@dataclass(frozen=True, slots=True)
class PlayoutStopped:
    """WebRTC: the server's output buffer drained (all of the response's audio was sent)."""

    response_id: str


@dataclass(frozen=True, slots=True)
class PlayoutCleared:
    """WebRTC: the server dropped the unsent rest of its output (the caller interrupted, or
    we cleared it)."""

    response_id: str


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class TranscriptDone:
    """The transcript of ``item_id``'s audio is complete (``text`` None: as accumulated)."""

    item_id: str
    text: str | None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The server's VAD heard the caller start talking."""


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The server's VAD heard the caller stop; ``audio_end_ms`` is where, in the audio this
    session was sent (None when the server does not say)."""

    audio_end_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    """A response began; ``tag`` is the metadata tag of one the bridge asked for."""

    response_id: str
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str


@dataclass(frozen=True, slots=True)
class ItemAdded:
    """The server added a conversation item (ours, when it is one we created)."""

    item_id: str


@dataclass(frozen=True, slots=True)
class ItemTruncated:
    """The server cut ``item_id``'s audio at ``audio_end_ms`` (our barge-in, confirmed)."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class CallerTranscript:
    """What the caller said in the turn ``item_id``."""

    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class FunctionCallStarted:
    """The model began a function call item (its name, for dialects that say it only here)."""

    item_id: str
    name: str


@dataclass(frozen=True, slots=True)
class FunctionCallDone:
    """The model finished a function call; ``arguments`` is its raw JSON text."""

    call_id: str
    name: str
    arguments: str
    item_id: str
    response_id: str


@dataclass(frozen=True, slots=True)
class CallerHeard:
    """GPT-Live transcribes the caller speaking: its server has heard them (and, when its
    audio stops too, given them the floor). ``text`` is the caller's turn ``item_id`` so far
    (the turn is written as a ``CallerTranscript`` once it closes)."""

    item_id: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class DelegationRequested:
    """GPT-Live hands work to us (client delegation): ``caller_text`` is what the caller has
    said in the turn so far (the delegation carries no task text of its own)."""

    delegation_id: str
    caller_text: str


@dataclass(frozen=True, slots=True)
class UsageUpdated:
    """The session's usage so far (a snapshot, never a delta), as the server reports it."""

    usage: dict[str, float]


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The server ended the session (``expired``, ``content``, ...); the socket closes next."""

    reason: str


@dataclass(frozen=True, slots=True)
class McpApprovalRequested:
    """The model wants to call a server-side MCP tool that needs approval."""

    item_id: str
    server_label: str
    name: str


@dataclass(frozen=True, slots=True)
class McpCallDone:
    """The model called a server-side MCP tool (``error`` set when it failed)."""

    server_label: str
    name: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ServerError:
    """An ``error`` event: ``event_id`` is the client event it refers to, if any."""

    code: str | None
    message: str | None
    event_id: str | None = None


ServerEvent = (
    SessionReady
    | AudioDelta
    | AudioDone
    | AgentItemStarted
    | TrackAudio
    | PlayoutStarted
    | PlayoutStopped
    | PlayoutCleared
    | TranscriptDelta
    | TranscriptDone
    | SpeechStarted
    | SpeechStopped
    | ResponseCreated
    | ResponseDone
    | ItemAdded
    | ItemTruncated
    | CallerTranscript
    | FunctionCallStarted
    | FunctionCallDone
    | CallerHeard
    | DelegationRequested
    | UsageUpdated
    | SessionClosed
    | McpApprovalRequested
    | McpCallDone
    | ServerError
)
