"""One call's stereo recording: caller on the left, agent on the right, as heard on the line.

Where the audio is taken decides what the file proves. The agent channel is what the SIP
engine's media thread pulled from the playout buffer (``RecordingTap`` stands between them),
so a barge-in shows as the cut the caller heard, not as the whole reply the model sent. The
caller channel is the frames the engine decoded, as the call session drains them.

Time alignment: the engine pulls one agent frame per 20 ms media tick, always (silence when
the agent is quiet), so the count of pulls is the call's clock and each agent frame's slot is
its pull number. Caller frames are drained on the loop thread a little later, in batches; a
batch of k frames taken after P pulls came in the last k ticks, so it gets slots P-k..P-1
(never before the previous batch's). Within a tick the engine reads the agent frame before it
delivers the caller's, so both frames of a tick land in the same slot.

Threads: the media thread only appends to a deque (atomic under the GIL, never blocking) and
drops frames, counted, when the writer has fallen ``MAX_BACKLOG_S`` behind. The writer is a
thread of the recording's own that wakes every ``POLL_S``, not once per frame: a wake-up costs
~100 us of CPU on a small VM, and 100 of them a second per call would cost more than the
writing. It patches the WAV header every ``PATCH_S``, so a killed process leaves a file that
plays up to about the last second.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np

from agent.audio.pcm import frame_bytes
from agent.observe.wav import GrowingWav
from agent.sip.engine import FrameSource

POLL_S: Final = 0.2
PATCH_S: Final = 1.0
#: Frames queued beyond this are dropped (and counted): the disk, not the call, is stuck.
MAX_BACKLOG_S: Final = 10
#: How long (in 20 ms slots) the writer waits for a tick's caller frame before writing
#: silence on the left: caller frames reach the loop a tick or two after their agent frame.
CALLER_LAG_SLOTS: Final = 10

_CALLER, _AGENT = 0, 1


class CallRecording:
    """Writes ``path``: a 2-channel PCM16 WAV at ``rate``, fed frame by frame."""

    def __init__(self, path: Path, rate: int, name: str = "recording") -> None:
        self.path = path
        self.rate = rate
        self._frame_bytes = frame_bytes(rate)
        self._queue: deque[tuple[int, int, bytes]] = deque()
        self._limit = MAX_BACKLOG_S * 50 * 2
        self._pulls = 0
        self._caller_next = 0
        self.dropped_frames = 0
        self.error: str | None = None
        self._wav = GrowingWav(path, 2, rate)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- media thread --------------------------------------------------------------------------
    def agent_frame(self, pcm: bytes) -> None:
        """The frame the engine just pulled for the line (one per media tick)."""
        slot = self._pulls
        self._pulls = slot + 1
        self._enqueue(_AGENT, slot, pcm)

    # -- loop thread ---------------------------------------------------------------------------
    def caller_frames(self, frames: Iterable[bytes]) -> None:
        """Caller frames drained since the last call, oldest first."""
        batch = list(frames)
        if not batch:
            return
        slot = max(self._pulls - len(batch), self._caller_next)
        for pcm in batch:
            self._enqueue(_CALLER, slot, pcm)
            slot += 1
        self._caller_next = slot

    def close(self) -> None:
        """Stop taking frames; the writer writes what is queued and closes the file."""
        self._stop.set()

    def join(self, timeout_s: float = 5.0) -> bool:
        """Wait for the file to be complete (after ``close``); False if it is not yet."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def seconds(self) -> float:
        """Audio in the file so far."""
        return self._wav.seconds

    def _enqueue(self, channel: int, slot: int, pcm: bytes) -> None:
        if self._stop.is_set():
            return
        if len(self._queue) >= self._limit:
            self.dropped_frames += 1
            return
        self._queue.append((channel, slot, pcm))

    # -- writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        tracks: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})
        ends = [0, 0]  # per channel: one past the highest slot seen
        cursor = 0  # next slot to write
        since_patch = 0.0
        try:
            while True:
                stopping = self._stop.wait(POLL_S)
                self._drain(tracks, ends)
                if stopping:
                    cursor = self._write(tracks, cursor, max(ends))
                    break
                # Agent slots are written once the caller's frame of the same tick had its
                # chance to arrive; without agent frames (no pulls yet) nothing is due.
                due = min(ends[_AGENT], max(ends[_CALLER], ends[_AGENT] - CALLER_LAG_SLOTS))
                cursor = self._write(tracks, cursor, due)
                since_patch += POLL_S
                if since_patch >= PATCH_S:
                    since_patch = 0.0
                    self._wav.patch()
        except OSError as exc:
            # A full or vanished disk: the call goes on, the file keeps what was patched.
            self.error = f"{type(exc).__name__}: {exc}"
            self._stop.set()
            self._queue.clear()
        finally:
            try:
                self._wav.close()
            except OSError as exc:
                self.error = self.error or f"{type(exc).__name__}: {exc}"

    def _drain(self, tracks: tuple[dict[int, bytes], dict[int, bytes]], ends: list[int]) -> None:
        queue = self._queue
        while queue:
            channel, slot, pcm = queue.popleft()
            tracks[channel][slot] = pcm
            if slot + 1 > ends[channel]:
                ends[channel] = slot + 1

    def _write(
        self, tracks: tuple[dict[int, bytes], dict[int, bytes]], cursor: int, until: int
    ) -> int:
        """Interleave slots ``cursor``..``until``-1 into the file; the new cursor."""
        if until <= cursor:
            return cursor
        size = self._frame_bytes
        silence = bytes(size)
        left = b"".join(self._fit(tracks[_CALLER].pop(s, silence)) for s in range(cursor, until))
        right = b"".join(self._fit(tracks[_AGENT].pop(s, silence)) for s in range(cursor, until))
        stereo = np.empty(len(left), dtype="<i2")
        stereo[0::2] = np.frombuffer(left, dtype="<i2")
        stereo[1::2] = np.frombuffer(right, dtype="<i2")
        self._wav.append(stereo.tobytes())
        # Frames for slots already written (a batch placed too early) are dropped.
        for track in tracks:
            for slot in [s for s in track if s < until]:
                del track[slot]
        return until

    def _fit(self, pcm: bytes) -> bytes:
        """Exactly one frame: an odd-sized one is cut or padded with silence."""
        size = self._frame_bytes
        if len(pcm) == size:
            return pcm
        return pcm[:size].ljust(size, b"\0")


class RecordingTap:
    """A frame source that hands every frame the engine pulls to the recording as well."""

    def __init__(self, source: FrameSource, recording: CallRecording) -> None:
        self.source = source
        self.recording = recording

    def pull(self) -> bytes:  # media thread
        frame = self.source.pull()
        self.recording.agent_frame(frame)
        return frame

    @property
    def flushes(self) -> int:
        """The source's flushes: an engine that buffers frames ahead drops its own on each."""
        return self.source.flushes

    def stats(self) -> dict[str, int]:
        """The source's own counters (the media port reports them at the call's end)."""
        stats = getattr(self.source, "stats", None)
        return dict(stats()) if callable(stats) else {}
