"""What a responder is asked and what it answers: the values the protocol and a responder
exchange, with no behaviour of their own.

A request carries the latest turn (its audio, text or transcript, or a function call's
output) and the session's tools; the answer is a ``Reply`` at once or, from a worker thread,
a ``ReplyPlan`` (what will be said, which function is called) followed by audio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.audio.pcm import MODEL_RATE

RATE = MODEL_RATE
"""Responders produce PCM16 mono little-endian audio at this rate (the API's native rate)."""


@dataclass(frozen=True)
class ToolCall:
    """A function call the reply makes after (or instead of) speaking."""

    name: str
    arguments: str
    """The arguments as a JSON object text, as the API sends them."""


@dataclass(frozen=True)
class ToolResult:
    """The client's answer to an earlier function call (a ``function_call_output`` item)."""

    name: str
    arguments: str
    output: str


@dataclass(frozen=True)
class ReplyRequest:
    """What a responder may use to decide what to say.

    ``user_audio`` is the latest user turn's audio (PCM16 at ``user_audio_rate``; empty when
    the turn was text), ``user_text`` its text when the client sent a text message.
    ``user_transcript`` blocks until that turn's speech-to-text is done (call it from a
    worker thread only); ``tool_result`` is set when the conversation ends with a function
    call's output; ``tools`` maps the functions the session lets the model call to the JSON
    schemas of their arguments;
    ``idle`` says the response was triggered by the idle timeout; ``audio`` says whether the
    response wants audio at all (text-only responses need no speech synthesis); ``say`` is
    text the client wants spoken as it is (a GPT-Live ``session.commentary.append``): every
    responder then speaks exactly that and decides nothing.
    """

    instructions: str
    user_text: str | None
    user_audio: bytes
    user_audio_rate: int
    user_transcript: Callable[[], str] | None = None
    tool_result: ToolResult | None = None
    tools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    idle: bool = False
    audio: bool = True
    say: str | None = None


@dataclass(frozen=True)
class Reply:
    """A reply: its transcript, its audio as PCM16 24 kHz chunks of any size, and an optional
    function call made once the speech is done."""

    text: str
    audio: Iterator[bytes]
    tool_call: ToolCall | None = field(default=None)


@dataclass(frozen=True)
class ReplyPlan:
    """What a reply will say (its transcript) and the function it calls afterwards, if any."""

    text: str
    tool_call: ToolCall | None = None
