"""Pacing the audio of every baresip call from one ticker on the event loop.

baresip never calls back per frame: received audio waits in a native ring buffer until read
(``call.audio``), and what the agent says is sent by its own audio source
(``agent.sip.baresip.source``) as soon as it is written: the source encodes the frame and
sends it as the call's RTP, with no transmit thread in between. So the application paces
itself. One ``MediaClock`` does it for all calls, from a single beat (a kernel timer on an
absolute grid, ``agent.audio.metronome``, so it neither drifts nor rounds to the loop's
milliseconds). Each call is served on one of ``PHASES`` 5 ms phases of the 20 ms period:
every 20 ms, on its phase's beat, the call's next frame from its frame source is sent, then
its caller's audio is read into 20 ms frames, then each call that got frames is told
(``CARRY_CHUNK`` calls per loop iteration, so the next beat never waits behind them all).
``bench/pacing.py`` measured the alternative (an asyncio task per call sleeping to its own
deadlines) at several times the loop's CPU for the same work at 150 calls.

Per call (``AudioPump``):
- receive: everything readable, cut into 20 ms PCM16 frames at the call's rate, into
  ``inbound`` (at most 1 s kept; older frames are dropped and counted); once nothing has
  come for ``FILL_AFTER_TICKS`` (the caller's RTP paused: silence suppression, a muted
  phone), a frame of silence per tick, as a media clock would, so the model's turn
  detection hears the caller stop instead of hearing nothing;
- transmit: one frame per tick that passed, silence when the agent says nothing, so RTP
  never pauses; a late tick sends the frames it owes at once, with consecutive timestamps
  (late, not lost: the far end's jitter buffer takes them); a flush of the frame source
  (barge-in) drops the part of a longer packet not sent yet (a far end asking for
  ``a=ptime:40``), and what the source holds after it is sent in the same tick;
- nothing is pulled or sent while the far end holds the call;
- renegotiation (``AudioRestarted``) is counted; the new source takes the next frame.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from baresip import AudioNotActive, AudioRestarted

from agent.audio.metronome import Metronome, media_metronome
from agent.audio.pcm import FRAME_MS, frame_bytes
from agent.sip.engine import FrameSource, SilenceSource

TICK_S = FRAME_MS / 1000
#: Caller frames kept while the shell is late (1 s); older ones are dropped and counted.
INBOUND_LIMIT = 50
#: Ticks without caller audio after which silence stands in for it (beyond RTP jitter).
FILL_AFTER_TICKS = 3
#: A loop this many ticks late sends one tick's frames, not the backlog.
RESYNC_TICKS = 10
#: Phases of the 20 ms period: each call is sent and read on one of them (``MediaClock``).
PHASES = 4
#: Calls whose caller frames go on to their sessions per loop iteration after a tick. The
#: loop runs a due timer before its next ready callback, so the next tick (and its RTP)
#: waits behind at most this many calls' uplink work, not every call's. Measured at 50 calls
#: (README "Benchmarks"): 4 took 2-3 ms off the tick's p99 lateness against 16, for the same
#: CPU; the extra loop iterations cost nothing measurable.
CARRY_CHUNK = 4


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
        self.frames_in = 0
        self.frames_filled = 0
        self.frames_out = 0
        self.inbound_dropped = 0
        self.restarts = 0
        self.tx_rejected_frames = 0

    def send(self, ticks: int) -> None:
        """The call's RTP for one tick (``ticks`` of them when the loop was late)."""
        if self.held:
            return
        try:
            self._transmit(ticks)
        except AudioRestarted:
            self.restarts += 1
        except AudioNotActive:
            pass

    def receive(self) -> bool:
        """What the caller sent since the last tick; True when caller frames came."""
        try:
            return self._receive()
        except AudioRestarted:
            self.restarts += 1
            self._partial = b""
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

    def _transmit(self, ticks: int) -> None:
        audio = self.audio
        if not audio.ready():
            return  # the source is not started yet: the agent's audio waits in its source
        source = self.source
        if source.flushes != self._flushes:
            self._flushes = source.flushes
            audio.drop_pending()
        for _ in range(ticks):
            frame = source.pull()
            if audio.write(frame) < len(frame):
                self.tx_rejected_frames += 1
            self.frames_out += 1

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
        }
        with contextlib.suppress(AudioNotActive, AudioRestarted):
            counters.update(self.audio.stats())
        source_stats = getattr(self.source, "stats", None)
        if callable(source_stats):
            counters.update(source_stats())
        return counters


class MediaClock:
    """Every call's ``AudioPump`` served from one beat on the loop, and ``idle`` (the transmit
    paths no pump serves yet) every 20 ms.

    The 20 ms period is cut into ``phases`` (``PHASES``) of 5 ms; each call is served in
    one phase, the one with the fewest calls when it joins, and a beat every 5 ms serves
    one phase. Serving every call on one beat put a call's packet as late as all the calls
    before it in that beat took to send, and that wait changed from beat to beat: at 100
    calls the beat took 1-4 ms, which was the p99 of each packet's interval jitter. A
    phase's beat is a quarter of that, and the callers' audio reaches the sessions spread
    over the period instead of in one burst. The beat is ``metronome``'s, made for the
    phase's period, by default the system's most precise (``agent.audio.metronome``: a
    kernel timer on Linux)."""

    def __init__(
        self,
        metronome: Callable[[float], Metronome] = media_metronome,
        idle: Callable[[], None] | None = None,
        phases: int = PHASES,
    ) -> None:
        self.phases: list[dict[str, AudioPump]] = [{} for _ in range(phases)]
        self.metronome = metronome(TICK_S / phases)
        self._idle = idle
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Beats since the start; beat b (from 1) serves phase (b - 1) % phases.
        self._beats = 0
        self.late_ticks = 0
        #: Pumps with caller frames for their sessions, in the order their ticks found them.
        self._to_carry: deque[AudioPump] = deque()
        self._carrying = False

    @property
    def pumps(self) -> dict[str, AudioPump]:
        """Every call's pump, by call id."""
        return {call_id: pump for phase in self.phases for call_id, pump in phase.items()}

    def add(self, call_id: str, pump: AudioPump) -> None:
        """Serve ``pump`` from the next beat of its phase (a call already served keeps its
        phase: a renegotiated call's packets keep their spacing)."""
        served = [phase for phase in self.phases if call_id in phase]
        phase = served[0] if served else min(self.phases, key=len)
        phase[call_id] = pump

    def remove(self, call_id: str) -> None:
        for phase in self.phases:
            phase.pop(call_id, None)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.metronome.start(loop, self._on_beats)

    def stop(self) -> None:
        self.metronome.stop()

    def _on_beats(self, count: int) -> None:
        # ``count`` beats are due (more than one when the loop was held up): each phase they
        # cover sends every 20 ms tick it owes, oldest first.
        phases = len(self.phases)
        first, last = self._beats + 1, self._beats + count
        self._beats = last
        for beat in range(first, min(last, first + phases - 1) + 1):
            phase = (beat - 1) % phases
            # Beats of this phase up to ``last``, less those up to ``first - 1``.
            owed = (last - 1 - phase) // phases - (first - 2 - phase) // phases
            self._tick(phase, owed)

    def _tick(self, phase: int, ticks: int) -> None:
        loop = self._loop
        assert loop is not None
        if phase == 0 and self._idle is not None:
            self._idle()
        pumps = self.phases[phase].values()
        if not pumps:
            return
        if ticks > RESYNC_TICKS:
            # A stall this long: its frames would reach the far end too late to play.
            self.late_ticks += ticks
            ticks = 1
        elif ticks > 1:
            self.late_ticks += ticks - 1
        # The phase's RTP first, so no call's packet waits behind another's reading; then
        # what its callers sent, whose frames go on to their sessions after the tick, a few
        # calls per loop iteration: the sends keep time, the sessions' work waits its turn.
        for pump in pumps:
            pump.send(ticks)
        to_carry = self._to_carry
        for pump in pumps:
            if pump.receive():
                to_carry.append(pump)
        if to_carry and not self._carrying:
            self._carrying = True
            loop.call_soon(self._carry)

    def _carry(self) -> None:
        to_carry = self._to_carry
        for _ in range(min(CARRY_CHUNK, len(to_carry))):
            pump = to_carry.popleft()
            # A failing listener must not stop the clock for every other call.
            with contextlib.suppress(Exception):
                pump.on_frames()
        if to_carry and self._loop is not None:
            self._loop.call_soon(self._carry)
        else:
            self._carrying = False
