"""One response's reply as the protocol consumes it: first the plan, then wire-ready chunks.

A responder answers with a synchronous ``Reply`` or a ``ReplyStream`` filled by a worker
thread; this adapter gives the protocol one non-blocking interface over both, and frames the
audio into the session's output codec as it goes.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator

from agent.audio.codecs import Codec
from agent.local.replies import Reply, ReplyPlan
from agent.local.reply_encoder import ReplyEncoder, encode_reply
from agent.local.reply_stream import ReplyStream


class Pending(enum.Enum):
    """Why ``next_chunk`` returned no audio."""

    WAIT = "wait"
    """Nothing yet: the producer is still working (the stream wakes the protocol)."""
    END = "end"
    """The reply's audio is complete."""


class ReplySource:
    """Non-blocking reads of a reply's plan and its audio in ``codec`` ``chunk_ms`` chunks.

    A producer's failure is raised from ``plan`` or ``next_chunk``, where the protocol turns
    it into a failed response.
    """

    def __init__(
        self, reply: Reply | ReplyStream, codec: Codec, chunk_ms: int, audio: bool
    ) -> None:
        self._stream: ReplyStream | None = None
        self._chunks: Iterator[bytes] = iter(())
        self._plan: ReplyPlan | None = None
        if isinstance(reply, ReplyStream):
            self._stream = reply
            self._encoder: ReplyEncoder | None = ReplyEncoder(codec, chunk_ms) if audio else None
            self._ready: deque[bytes] = deque()
            self._flushed = False
        else:
            self._plan = ReplyPlan(reply.text, reply.tool_call)
            if audio:
                self._chunks = encode_reply(reply.audio, codec, chunk_ms)

    @property
    def stream(self) -> ReplyStream | None:
        return self._stream

    def plan(self) -> ReplyPlan | None:
        """The plan once the producer decided; None while it is still thinking."""
        if self._plan is None and self._stream is not None:
            self._plan = self._stream.plan
            if self._plan is None and self._stream.finished:
                raise self._stream.error or RuntimeError("the reply ended without a plan")
        return self._plan

    def next_chunk(self) -> bytes | Pending:
        if self._stream is None:
            return next(self._chunks, Pending.END)
        if self._encoder is None:
            # Text only: nothing to stream, but a failure still fails the response.
            if self._stream.error is not None:
                raise self._stream.error
            return Pending.END
        while not self._ready:
            piece = self._stream.read()
            if piece is not None:
                self._ready.extend(self._encoder.feed(piece))
                continue
            if not self._stream.finished:
                return Pending.WAIT
            if self._stream.error is not None:
                raise self._stream.error
            if self._flushed:
                return Pending.END
            self._flushed = True
            self._ready.extend(self._encoder.flush())
        return self._ready.popleft()

    def cancel(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
