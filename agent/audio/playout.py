"""Agent -> caller playout buffer with exact per-item sample accounting.

The asyncio loop pushes 8 kHz PCM16 tagged with the realtime conversation item it belongs
to; the PJSIP media clock thread pulls exactly one frame every 20 ms. A plain lock guards the
state: both sides hold it only for O(frame) work (slicing bytes, bumping counters), so the
clock thread never waits on the event loop, and underrun yields silence instead of blocking.

Barge-in needs "how much of item X did the caller hear": ``played_samples`` counts the
samples of each item handed to the media port, exact even when one frame carries the end of
one item and the start of the next, and ``flush`` drops the rest and says which item was cut
and where (``played_ms`` gives the value for ``conversation.item.truncate``'s audio_end_ms).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Final

from agent.audio.pcm import check_pcm16

DEFAULT_MAX_BUFFER_MS: Final = 60_000
"""Cap on queued audio; the model generates faster than real time, but not minutes ahead."""

MAX_TRACKED_ITEMS: Final = 64
"""Per-item counters kept for this many most recent items (older, finished ones are forgotten)."""


@dataclass(slots=True)
class _ItemCounts:
    received: int = 0  # samples accepted by push()
    played: int = 0  # samples handed out by pull()
    discarded: int = 0  # samples dropped by flush()

    @property
    def queued(self) -> int:
        return self.received - self.played - self.discarded


class Playout:
    """Thread-safe FIFO of tagged PCM16 audio, drained one fixed-size frame per pull."""

    def __init__(
        self,
        frame_samples: int = 160,
        sample_rate: int = 8000,
        max_buffer_ms: int = DEFAULT_MAX_BUFFER_MS,
    ) -> None:
        if frame_samples <= 0 or sample_rate <= 0 or max_buffer_ms <= 0:
            raise ValueError("frame_samples, sample_rate and max_buffer_ms must be positive")
        self.frame_samples: Final = frame_samples
        self.sample_rate: Final = sample_rate
        self.max_samples: Final = sample_rate * max_buffer_ms // 1000
        self._frame_bytes = frame_samples * 2
        # Shared, immutable: underrun frames cost no allocation.
        self._silence = bytes(self._frame_bytes)
        # Reused to assemble frames that span segments; bytes() of it is the one copy.
        self._scratch = bytearray(self._frame_bytes)
        self._lock = threading.Lock()
        self._segments: deque[tuple[str, bytes]] = deque()
        self._head_offset = 0  # bytes of segments[0] already handed out
        self._queued = 0  # samples
        self._counts: OrderedDict[str, _ItemCounts] = OrderedDict()
        self._last_played: str | None = None
        self.frames_pulled = 0
        self.underruns = 0  # pulls that found nothing queued: a whole frame of silence
        self.padded_frames = 0  # pulls that ran dry mid-frame: audio, then silence
        self.dropped_samples = 0  # pushed audio refused because the buffer was full
        # Underruns also happen whenever the agent is silent, which is no loss. A gap is a pull
        # that ran short while an item was playing and more of that same item arrived later:
        # audio that was due and came late (a stalled loop, a slow model, a starved process).
        self.gap_frames = 0
        self._gap_pending = 0  # short pulls since the playing item's audio ran out
        #: Bumped by every flush: an engine that keeps frames of its own queued (baresip's
        #: transmit buffer) drops them too when this changes.
        self.flushes = 0
        #: While set (the far end holds the call), pulls return silence and consume nothing:
        #: what is queued plays on resume, none of it sent into a held line.
        self.paused = False
        self.paused_pulls = 0

    # -- loop thread ----------------------------------------------------------------------

    def push(self, item_id: str, pcm: bytes) -> None:
        """Queue PCM16 LE audio of ``item_id`` after everything already queued.

        Audio beyond ``max_buffer_ms`` of backlog is dropped and counted in
        ``dropped_samples`` rather than raised: the media must keep flowing.
        """
        samples = check_pcm16(pcm, f"audio of item {item_id!r}")
        data = bytes(pcm)  # own the audio outside the lock (no copy if already bytes)
        with self._lock:
            counts = self._counts_for(item_id)
            accepted = min(samples, self.max_samples - self._queued)
            if accepted < samples:
                self.dropped_samples += samples - accepted
                data = data[: accepted * 2]
            if accepted <= 0:
                return
            if self._gap_pending:
                if item_id == self._last_played:
                    self.gap_frames += self._gap_pending
                self._gap_pending = 0
            self._segments.append((item_id, data))
            self._queued += accepted
            counts.received += accepted

    def flush(self) -> tuple[str | None, int]:
        """Drop all queued audio; return (item cut off, its samples already handed out).

        The item is the one the next pull would have played, or if nothing is queued the
        last item that played (more of it may still be on its way from the model). After a
        flush nothing is current, so a second flush returns (None, 0).
        """
        with self._lock:
            item = self._current_item_locked()
            counts = self._counts.get(item) if item is not None else None
            played = counts.played if counts is not None else 0
            offset = self._head_offset
            for seg_item, data in self._segments:
                counts = self._counts.get(seg_item)
                if counts is not None:
                    counts.discarded += (len(data) - offset) // 2
                offset = 0
            self._segments.clear()
            self._head_offset = 0
            self._queued = 0
            self._last_played = None
            self._gap_pending = 0
            self.flushes += 1
            return item, played

    # -- media clock thread ---------------------------------------------------------------

    def pull(self) -> bytes:
        """Return exactly ``frame_samples`` samples of PCM16 LE; silence fills any gap."""
        need = self._frame_bytes
        with self._lock:
            if self.paused:
                self.paused_pulls += 1
                return self._silence
            self.frames_pulled += 1
            if not self._segments:
                self.underruns += 1
                if self._last_played is not None:
                    self._gap_pending += 1
                return self._silence
            item, data = self._segments[0]
            start = self._head_offset
            if len(data) - start >= need:
                # Common case: the whole frame comes from one segment, one slice.
                self._head_offset = start + need
                if self._head_offset == len(data):
                    self._segments.popleft()
                    self._head_offset = 0
                self._account(item, need // 2)
                return data[start : start + need]
            return self._assemble_locked()

    def _assemble_locked(self) -> bytes:
        # The frame straddles segments (and maybe items): copy piecewise into the scratch
        # frame, crediting each item with exactly the samples it contributed.
        need = self._frame_bytes
        filled = 0
        scratch = memoryview(self._scratch)
        while filled < need and self._segments:
            item, data = self._segments[0]
            start = self._head_offset
            take = min(need - filled, len(data) - start)
            scratch[filled : filled + take] = memoryview(data)[start : start + take]
            filled += take
            if start + take == len(data):
                self._segments.popleft()
                self._head_offset = 0
            else:
                self._head_offset = start + take
            self._account(item, take // 2)
        if filled < need:
            scratch[filled:] = memoryview(self._silence)[: need - filled]
            self.padded_frames += 1
            self._gap_pending += 1
        return bytes(self._scratch)

    def _account(self, item: str, samples: int) -> None:
        counts = self._counts.get(item)
        if counts is not None:
            counts.played += samples
        self._queued -= samples
        self._last_played = item

    # -- queries (any thread) -------------------------------------------------------------

    def played_samples(self, item_id: str) -> int:
        """Samples of ``item_id`` handed out by pull() so far (0 if unknown or forgotten)."""
        with self._lock:
            counts = self._counts.get(item_id)
            return counts.played if counts is not None else 0

    def played_ms(self, item_id: str) -> int:
        """Whole milliseconds of ``item_id`` the caller has been sent (rounded down)."""
        return self.played_samples(item_id) * 1000 // self.sample_rate

    def received_samples(self, item_id: str) -> int:
        """Samples of ``item_id`` accepted by push() so far (0 if unknown or forgotten)."""
        with self._lock:
            counts = self._counts.get(item_id)
            return counts.received if counts is not None else 0

    def stats(self) -> dict[str, int]:
        """Counters for the end-of-call log line."""
        with self._lock:
            return {
                "frames_pulled": self.frames_pulled,
                "underruns": self.underruns,
                "padded_frames": self.padded_frames,
                "gap_frames": self.gap_frames,
                "dropped_samples": self.dropped_samples,
                "paused_pulls": self.paused_pulls,
            }

    @property
    def queued_samples(self) -> int:
        """Samples waiting to be pulled."""
        with self._lock:
            return self._queued

    @property
    def current_item(self) -> str | None:
        """Item the next pull would play, else the item that played last (None after flush)."""
        with self._lock:
            return self._current_item_locked()

    # -- internals ------------------------------------------------------------------------

    def _current_item_locked(self) -> str | None:
        if self._segments:
            return self._segments[0][0]
        return self._last_played

    def _counts_for(self, item_id: str) -> _ItemCounts:
        counts = self._counts.get(item_id)
        if counts is None:
            counts = self._counts[item_id] = _ItemCounts()
            self._forget_old_items(keep=item_id)
        return counts

    def _forget_old_items(self, keep: str) -> None:
        # Oldest first, but never the new item, the one playing, or one with audio still
        # queued: barge-in may still ask about those. Runs only when a new item appears.
        excess = len(self._counts) - MAX_TRACKED_ITEMS
        if excess <= 0:
            return
        protected = {keep, self._last_played}
        idle = [k for k, c in self._counts.items() if c.queued == 0 and k not in protected]
        for item_id in idle[:excess]:
            del self._counts[item_id]
