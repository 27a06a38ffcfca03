"""Audio on a WebRTC media track: 20 ms frames of 48 kHz mono PCM16 (Opus's clock), paced out
in real time, and the far end's frames taken back to mono at another rate.

Both sides of the project's WebRTC use this: the agent (caller audio out, the model's audio in)
and the local server (the reply out, the caller in). Resampling is soxr's streaming kind
(``agent.audio.resample``), one stream per direction, so the call's 8/16 kHz and the track's
48 kHz meet sample-aligned; aiortc's Opus codec then sees 48 kHz already and does no
resampling of its own.
"""

from __future__ import annotations

import asyncio
import fractions

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from agent.audio.resample import StreamResampler

#: Opus's RTP clock; the rate of every frame on our tracks.
TRACK_RATE = 48000
FRAME_MS = 20
TRACK_FRAME_SAMPLES = TRACK_RATE * FRAME_MS // 1000
_FRAME_BYTES = TRACK_FRAME_SAMPLES * 2
_TIME_BASE = fractions.Fraction(1, TRACK_RATE)
#: Queued audio beyond this is dropped from the front: a stalled far end must not turn into
#: seconds of delay once it recovers.
MAX_QUEUED_MS = 2000


class OutboundAudio(MediaStreamTrack):
    """The audio track we send: PCM16 pushed at ``rate`` goes out in 20 ms frames at 48 kHz,
    one per 20 ms of the loop's clock; silence whenever nothing is queued.

    ``on_frame(had_audio)`` is called with each frame sent (the local server's playout
    events follow it).
    """

    kind = "audio"

    def __init__(self, rate: int, quality: str = "LQ") -> None:
        super().__init__()
        self._up = StreamResampler(rate, TRACK_RATE, quality) if rate != TRACK_RATE else None
        self._queue = bytearray()
        self._pts = 0
        self._start: float | None = None
        self._silence = bytes(_FRAME_BYTES)

    def set_rate(self, rate: int, quality: str = "LQ") -> None:
        """The source's rate changed (a session's new format): resample from ``rate`` now."""
        self._up = StreamResampler(rate, TRACK_RATE, quality) if rate != TRACK_RATE else None

    def push(self, pcm: bytes) -> None:
        """Queue PCM16 mono at the track's source rate."""
        data = self._up.process(pcm) if self._up is not None else pcm
        self._queue += data
        excess = len(self._queue) - MAX_QUEUED_MS * TRACK_RATE // 1000 * 2
        if excess > 0:
            del self._queue[:excess]

    def clear(self) -> int:
        """Drop what is queued (a barge-in); returns the samples dropped (at 48 kHz)."""
        dropped = len(self._queue) // 2
        self._queue.clear()
        if self._up is not None:
            self._up.reset()
        return dropped

    @property
    def queued_samples(self) -> int:
        """Samples (at 48 kHz) still to send."""
        return len(self._queue) // 2

    def on_frame(self, samples: int) -> None:
        """``samples`` of queued audio (the rest silence) went out in the frame just sent."""

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._pts / TRACK_RATE
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.2:
            # The loop was held up: start the clock again rather than send a burst.
            self._start = loop.time() - self._pts / TRACK_RATE
        taken = min(len(self._queue), _FRAME_BYTES)
        chunk = bytes(self._queue[:taken]) + self._silence[taken:]
        del self._queue[:taken]
        self.on_frame(taken // 2)
        frame = AudioFrame.from_ndarray(
            np.frombuffer(chunk, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = TRACK_RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        self._pts += TRACK_FRAME_SAMPLES
        return frame


class InboundAudio:
    """The far end's track, as PCM16 mono at ``rate`` (one chunk per frame received)."""

    def __init__(self, track: MediaStreamTrack, rate: int, quality: str = "LQ") -> None:
        self._track = track
        self._rate = rate
        self._quality = quality
        self._down: StreamResampler | None = None
        self._source_rate = 0
        self.frames = 0

    async def next(self) -> bytes:
        """The next frame's audio; raises ``MediaStreamError`` once the track ended."""
        frame = await self._track.recv()
        assert isinstance(frame, AudioFrame)
        return self.convert(frame)

    def convert(self, frame: AudioFrame) -> bytes:
        samples: np.ndarray = frame.to_ndarray()
        channels = len(frame.layout.channels)
        if frame.format.name != "s16":
            # aiortc's decoders give packed s16; anything else is rescaled from float.
            samples = np.clip(samples * 32767, -32768, 32767)
        mono = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples.ravel()
        pcm = mono.astype(np.int16).tobytes()
        self.frames += 1
        if frame.sample_rate == self._rate:
            return pcm
        if self._down is None or self._source_rate != frame.sample_rate:
            self._source_rate = frame.sample_rate
            self._down = StreamResampler(frame.sample_rate, self._rate, self._quality)
        return self._down.process(pcm)

    def reset(self) -> None:
        """Barge-in: drop what the resampler holds back."""
        if self._down is not None:
            self._down.reset()
