"""Pacing the audio of every baresip call from one ticker on the event loop.

baresip never calls back per frame: received audio waits in a native ring buffer until read
(``call.audio``), and what is written (through the agent's own audio source,
``agent.sip.baresip.source``) waits in the stack's transmit buffer until the call's transmit
thread sends it, one ptime (20 ms) at a time, nothing when it runs dry. So the application
paces itself. One ``MediaClock`` does it for all calls: a single timer callback every 20 ms
(at absolute deadlines, so it never drifts) reads each call's caller audio into 20 ms
frames and keeps its transmit buffer a couple of frames deep from the call's frame source,
then tells each call that got frames. ``bench/pacing.py`` measured the alternative (an
asyncio task per call sleeping to its own deadlines) at several times the loop's CPU for the
same work at 150 calls.

Per call (``AudioPump``):
- receive: everything readable, cut into 20 ms PCM16 frames at the call's rate, into
  ``inbound`` (at most 1 s kept; older frames are dropped and counted); once nothing has
  come for ``FILL_AFTER_TICKS`` (the caller's RTP paused: silence suppression, a muted
  phone), a frame of silence per tick, as a media clock would, so the model's turn
  detection hears the caller stop instead of hearing nothing;
- transmit: the clock's margin (``TransmitMargin``: one frame, more while the loop runs
  late or a transmit thread runs dry) ahead of the transmit thread, plus one frame per tick
  that passed (so a late tick is made up, not lost); every second the real depth is read
  back and corrected by a frame, which keeps the buffer from creeping either way, and the
  stack's count of ptimes that found no frame is read too: the pump writes a frame every
  tick (silence when the agent says nothing), so a count that grew while it fed the call
  steadily means the thread ran dry (it ran late, then caught up faster than the ticks),
  and the margin grows;
- a flush of the frame source (barge-in) empties the stack's transmit buffer too, and what
  the source holds after it is written in the same tick;
- nothing is pulled or written while the far end holds the call;
- renegotiation (``AudioRestarted``) loses what the native buffers held: counted, prefilled
  again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog
from baresip import AudioNotActive, AudioRestarted

from agent.audio.pcm import FRAME_MS, frame_bytes
from agent.sip.engine import FrameSource, SilenceSource

_log = structlog.get_logger("sip")
TICK_S = FRAME_MS / 1000
#: Frames kept written ahead of the transmit thread while the ticker keeps time: 20 ms of
#: lateness costs nothing (its p99 lateness was 3.8 ms at 150 calls), and a barge-in flushes
#: it. Each frame more costs every reply ~27 ms on the way out (bench/latency.py, G.711
#: passthrough, outbound p50: 24 ms with 0 frames, 44 ms with 1, 77 ms with 2); 0 would
#: leave no margin at all for a late tick, so a gap at the caller.
PREFILL_FRAMES = 1
#: The most frames kept ahead, however late the loop runs (60 ms): a loop later than that is
#: a machine out of CPU, which more latency for every caller would not cure.
MAX_MARGIN_FRAMES = 3
#: A tick this much later than the margin leaves the transmit thread may find its buffer
#: empty: it polls every 4 ms, and the write itself takes time.
MARGIN_SAFETY_S = 0.008
#: Ticks on time after which the margin gives a frame back (10 s).
CALM_TICKS = 500
#: Caller frames kept while the shell is late (1 s); older ones are dropped and counted.
INBOUND_LIMIT = 50
#: Ticks without caller audio after which silence stands in for it (beyond RTP jitter).
FILL_AFTER_TICKS = 3
#: Ticks between reads of the real transmit depth (1 s).
CHECK_EVERY = 50
#: A loop this many ticks late restarts the schedule instead of running the backlog.
RESYNC_TICKS = 10


class TransmitMargin:
    """How many frames every call keeps written ahead of its transmit thread (sans-I/O).

    ``PREFILL_FRAMES`` while the ticker keeps time. A tick so late that the transmit thread
    may have run dry (within ``MARGIN_SAFETY_S`` of the margin) adds a frame, up to
    ``MAX_MARGIN_FRAMES``, for every call at once: what delays the loop delays every call's
    writes. After ``CALM_TICKS`` ticks on time the margin gives a frame back, so a passing
    stall costs a little latency for a while, not for good. Growing writes one frame more and
    shrinking one fewer: no audio is lost either way, only its distance from the wire moves.
    """

    def __init__(self) -> None:
        self.frames = PREFILL_FRAMES
        self._calm = 0
        self.raised = 0

    def ran_dry(self) -> None:
        """A frame more (and the calm count restarted): a transmit thread found nothing to
        send, because the ticks came late or its own lateness (a starved thread catching
        up) ate the margin."""
        self._calm = 0
        if self.frames < MAX_MARGIN_FRAMES:
            self.frames += 1
            self.raised += 1

    def tick(self, lateness_s: float) -> int:
        """The margin after a tick that ran ``lateness_s`` behind its deadline."""
        if lateness_s > self.frames * TICK_S - MARGIN_SAFETY_S:
            self.ran_dry()  # or as good as: this late, it may have
            return self.frames
        self._calm += 1
        if self._calm >= CALM_TICKS and self.frames > PREFILL_FRAMES:
            self.frames -= 1
            self._calm = 0
        return self.frames


class AudioPump:
    """One call's audio both ways: see the module docstring."""

    def __init__(self, audio: Any, rate: int, on_frames: Callable[[], None]) -> None:
        self.audio = audio
        self.rate = rate
        self.frame_bytes = frame_bytes(rate)
        self._read_max = 4 * self.frame_bytes
        self.on_frames = on_frames
        self.inbound: deque[bytes] = deque()
        self._partial = b""
        self._quiet_ticks = 0
        self._silence = bytes(self.frame_bytes)
        self.source: FrameSource = SilenceSource(rate)
        self._flushes = 0
        self.held = False
        self._ticks = 0
        #: Read the real depth at the next transmit (start, restart, flush): fill up to it.
        self._check = True
        #: Frames kept ahead of the transmit thread (the clock's ``TransmitMargin``).
        self._margin = PREFILL_FRAMES
        #: The stack's count of ptimes that found no frame, at the last check, and whether
        #: the pump has fed every tick since (no flush, hold or restart in between).
        self._silence_seen = 0
        self._steady = False
        #: Set when the transmit thread ran dry while fed steadily; the clock takes it.
        self.ran_dry = False
        self.dry_spells = 0
        self.frames_in = 0
        self.frames_filled = 0
        self.frames_out = 0
        self.inbound_dropped = 0
        self.restarts = 0
        self.tx_rejected_frames = 0

    def exchange(self, ticks: int, margin: int = PREFILL_FRAMES) -> bool:
        """One tick (``ticks`` of them when the loop was late), keeping ``margin`` frames
        ahead of the transmit thread; True when caller frames came."""
        try:
            arrived = self._receive()
            if self.held:
                self._steady = False
            else:
                self._transmit(ticks, margin)
            return arrived
        except AudioRestarted:
            self._steady = False
            self.restarts += 1
            self._partial = b""
            self._check = True
            return False
        except AudioNotActive:
            return False

    def _receive(self) -> bool:
        data = self.audio.read(self._read_max)
        if not data:
            self._quiet_ticks += 1
            if self._quiet_ticks < FILL_AFTER_TICKS or self.held:
                return False
            self._append(self._silence)
            self.frames_filled += 1
            return True
        self._quiet_ticks = 0
        if self._partial:
            data, self._partial = self._partial + data, b""
        size = self.frame_bytes
        whole = len(data) - len(data) % size
        if whole < len(data):
            self._partial = data[whole:]
        for start in range(0, whole, size):
            self._append(data[start : start + size])
            self.frames_in += 1
        return whole > 0

    def _append(self, frame: bytes) -> None:
        inbound = self.inbound
        if len(inbound) >= INBOUND_LIMIT:
            inbound.popleft()
            self.inbound_dropped += 1
        inbound.append(frame)

    def _transmit(self, ticks: int, margin: int) -> None:
        source = self.source
        flushed = source.flushes != self._flushes
        if flushed:
            # Emptied at once (agent.sip.baresip.source): what the source holds now, the
            # audio after the barge-in, is written in this same tick, so RTP never pauses.
            self._flushes = source.flushes
            self.audio.flush_tx()
            self._check = True
            self._steady = False
        self._ticks += 1
        # A wider margin is one frame more now; a narrower one, one fewer.
        owed = ticks + margin - self._margin
        self._margin = margin
        if self._check or self._ticks % CHECK_EVERY == 0:
            info = self.audio.info()
            if not info.tx_ready:
                return
            if not flushed:  # a ptime found empty between the flush and the refill is no reason
                self._note_dry()
            self._check = False
            # What is buffered already counts every tick that passed: the one frame the
            # thread takes before the next tick, and the margin.
            owed = 1 + margin - info.tx_buffered // self.frame_bytes
        for _ in range(max(0, owed)):
            frame = source.pull()
            if self.audio.write(frame) < len(frame):
                self.tx_rejected_frames += 1
            self.frames_out += 1

    def _note_dry(self) -> None:
        stats = self.audio.stats()
        silence = stats.tx_silence_frames
        if self._steady and silence > self._silence_seen:
            self.ran_dry = True
            self.dry_spells += 1
        self._silence_seen = silence
        self._steady = True

    def discard_received(self) -> int:
        """Drop the caller audio the native buffer holds now (a call we placed: its early
        media, received before the answer); how many frames' worth."""
        dropped = 0
        with contextlib.suppress(AudioNotActive, AudioRestarted):
            while data := self.audio.read(64 * self.frame_bytes):
                dropped += len(data)
        return dropped // self.frame_bytes

    def take_frames(self) -> list[bytes]:
        inbound = self.inbound
        frames = list(inbound)
        inbound.clear()
        return frames

    def stats(self) -> dict[str, int]:
        counters = {
            "frames_in": self.frames_in,
            "frames_filled": self.frames_filled,
            "frames_out": self.frames_out,
            "inbound_dropped": self.inbound_dropped,
            "audio_restarts": self.restarts,
            "tx_rejected_frames": self.tx_rejected_frames,
            "tx_dry_spells": self.dry_spells,
            "tx_silence_frames": self._silence_seen,
        }
        source_stats = getattr(self.source, "stats", None)
        if callable(source_stats):
            counters.update(source_stats())
        return counters


class MediaClock:
    """One timer on the loop, every 20 ms, serving every call's ``AudioPump``, and ``idle``
    (the transmit paths no pump serves yet) on every tick."""

    def __init__(self, idle: Callable[[], None] | None = None) -> None:
        self.pumps: dict[str, AudioPump] = {}
        self._idle = idle
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._next = 0.0
        self.late_ticks = 0
        self.margin = TransmitMargin()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._next = loop.time() + TICK_S
        self._timer = loop.call_at(self._next, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        lateness = now - self._next
        before = self.margin.frames
        # Only a loop late while calls are up says anything about their audio (start-up, a
        # model loading, would otherwise raise the margin of the first calls).
        margin = self.margin.tick(lateness) if self.pumps else self.margin.frames
        ticks = 1 + int(lateness / TICK_S)
        if ticks > RESYNC_TICKS:
            self.late_ticks += ticks
            ticks = 1
            self._next = now
        elif ticks > 1:
            self.late_ticks += ticks - 1
        self._next += ticks * TICK_S
        self._timer = loop.call_at(self._next, self._tick)
        if self._idle is not None:
            self._idle()
        arrived: list[AudioPump] = []
        dry = 0
        for pump in self.pumps.values():
            if pump.exchange(ticks, margin):
                arrived.append(pump)
            if pump.ran_dry:
                pump.ran_dry = False
                dry += 1
        if dry:
            self.margin.ran_dry()  # once: what starves one thread starves them all
        if self.margin.frames != before and self.pumps:
            # At most one line per late spell and one per CALM_TICKS after it.
            _log.info(
                "media_margin_changed",
                frames=self.margin.frames,
                lateness_ms=round(lateness * 1e3),
                calls_ran_dry=dry,
            )
        for pump in arrived:
            # A failing listener must not stop the clock for every other call.
            with contextlib.suppress(Exception):
                pump.on_frames()
