"""The media port joining one call's audio to Python.

Both frame callbacks run on PJSIP's media clock thread, every 20 ms, through SWIG and the GIL.
They only copy bytes and touch a deque or the playout buffer's short lock: never PJSUA2, never
asyncio, never logging. The asyncio side drains ``inbound`` from the SIP poll loop.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import pjsua2 as pj

from agent.sip.frame_bytes import read_frame, write_frame

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2
#: Inbound frames kept while the event loop is late (1 s); older ones are dropped and counted.
INBOUND_LIMIT = 50


class FrameSource(Protocol):
    def pull(self) -> bytes:
        """Exactly one frame of 8 kHz PCM16, silence when there is nothing to play."""
        ...


class _Silence:
    _frame = bytes(FRAME_BYTES)

    def pull(self) -> bytes:
        return self._frame


class BridgePort(pj.AudioMediaPort):
    """An ``AudioMediaPort``: caller frames into ``inbound``, agent frames from ``source``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.inbound: deque[bytes] = deque()
        self.source: FrameSource = _Silence()
        self.frames_in = 0
        self.frames_out = 0
        self.inbound_dropped = 0
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = SAMPLE_RATE
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = FRAME_MS * 1000
        self.createPort(name, fmt)

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:  # clock thread
        write_frame(frame, self.source.pull())
        self.frames_out += 1

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:  # clock thread
        if frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
            return
        payload = read_frame(frame)
        if len(payload) != FRAME_BYTES:
            return
        inbound = self.inbound
        if len(inbound) >= INBOUND_LIMIT:
            inbound.popleft()
            self.inbound_dropped += 1
        inbound.append(payload)
        self.frames_in += 1
