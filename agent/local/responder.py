"""Who answers for the local server: the ``Responder`` and ``Transcriber`` interfaces.

The protocol asks a ``Responder`` for each response and streams whatever it returns, so a
real STT/LLM/TTS chain can replace the synthetic voice (``synthetic_voice``) without touching
the protocol. A responder answers either at once with a ``Reply`` (cheap, synchronous: the
synthetic voice, test doubles) or with a ``ReplyStream`` that a worker thread fills while the
event loop goes on (speech-to-text and text-to-speech take hundreds of milliseconds).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from agent.local.replies import Reply, ReplyRequest
from agent.local.reply_stream import ReplyStream


class Responder(Protocol):
    def reply(self, request: ReplyRequest) -> Reply | ReplyStream: ...


class Transcriber(Protocol):
    """Speech-to-text of committed user turns, run off the event loop."""

    def submit(self, pcm: bytes, rate: int) -> Future[str]:
        """Start transcribing PCM16 mono ``pcm`` at ``rate``; the future holds the text."""
        ...
