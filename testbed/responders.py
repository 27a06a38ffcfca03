"""Scripted replies for the local server: audio a test can recognise at the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from agent.local.replies import RATE, Reply, ReplyRequest

#: Each chunk of a reply is 100 ms, as a model streams it.
_CHUNK_BYTES = RATE * 2 // 10


class ToneResponder:
    """Every reply: ``seconds`` of a steady 440 Hz tone at about -14 dBFS (clearly not
    silence), in 100 ms chunks, with ``text`` as its transcript."""

    def __init__(self, seconds: float, text: str) -> None:
        t = np.arange(int(RATE * seconds)) / RATE
        self._pcm = (np.sin(2 * np.pi * 440 * t) * 6000).astype("<i2").tobytes()
        self.text = text

    def reply(self, request: ReplyRequest) -> Reply:
        pcm = self._pcm

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(pcm), _CHUNK_BYTES):
                yield pcm[start : start + _CHUNK_BYTES]

        return Reply(self.text, chunks())


def tone_responder(seconds: float, text: str = "A tone.") -> Callable[[], ToneResponder]:
    """A ``responder_factory`` for ``RecordingServer``: one ``ToneResponder`` per session."""
    return lambda: ToneResponder(seconds, text)
