"""Barge-in: when the caller talks over the agent, what to cut and how much was heard. No I/O.

The Realtime API says when the caller starts talking (its VAD); GPT-Live does not, and has no
flush or truncate either: its server owns turn-taking and simply stops its audio when it
gives the caller the floor. :class:`YieldWatch` tells that apart from a pause in a paced
stream, so the audio a server sent ahead of real time is not played over the caller.

It keeps per-item audio accounting (what the model sent, at the model's rate) beside the
call's :class:`~agent.audio.playout.Playout` (what was handed to the line, at the call's
rate), holds a barge-in for the echo guard, and on a cut flushes the playout at once, so the
media clock's very next 20 ms pull is silence. Which response is in progress, and what to
send about it, is the bridge's business (one notion of it, in ``CallBridge``).

``audio_end_ms`` of a cut is the audio of the item actually handed to the media port
(sample-accurate at the call's rate). What the resampler still held back, or what was queued
behind the cut, was never heard and is not counted. It never exceeds the audio received for
the item.

Too short to be an interruption (``min_ms``): the server's VAD reports a cough, an "uh-huh", a
click on the line or the agent's own voice echoed by the phone as speech just the same. With
``min_ms`` > 0 a barge-in while the agent talks is held until that much caller audio above
``min_dbfs`` has been measured here; a burst that ends sooner is ignored (and counted). This
is the one mechanism for echo and for backchannels alike: both are short and loud enough.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from agent.audio.playout import Playout

#: Items whose received audio is tracked (older, finished ones are forgotten).
_MAX_TRACKED = 64


@dataclass
class _Item:
    response_id: str
    received_samples: int = 0  # at the model's output rate
    audio_done: bool = False


@dataclass(frozen=True, slots=True)
class Cut:
    """Agent audio a barge-in cut short: the item, what the caller heard of it, its response."""

    item_id: str
    audio_end_ms: int
    response_id: str


class BargeIn:
    """Per-call barge-in state.

    ``min_ms`` > 0 holds a barge-in until that much caller audio louder than ``min_dbfs``
    has been measured locally (echo, coughs and backchannels are shorter).
    """

    def __init__(
        self,
        playout: Playout,
        *,
        output_rate: int = 24000,
        min_ms: int = 0,
        min_dbfs: float = -40.0,
    ) -> None:
        self.playout = playout
        self.output_rate = output_rate
        self.min_ms = min_ms
        self.min_dbfs = min_dbfs
        self._items: OrderedDict[str, _Item] = OrderedDict()
        self._pending = False
        self._loud_ms = 0.0
        #: Barge-ins: caller turns that cut agent audio short.
        self.interruptions = 0
        #: Barge-in triggers held and then dropped as too short to be speech.
        self.ignored = 0

    # -- the model's audio -------------------------------------------------------------------
    def received(self, response_id: str, item_id: str, samples: int) -> None:
        """Account ``samples`` (at the output rate) of ``item_id``."""
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _Item(response_id)
            while len(self._items) > _MAX_TRACKED:
                self._items.popitem(last=False)
        item.received_samples += samples

    def audio_done(self, item_id: str) -> None:
        item = self._items.get(item_id)
        if item is not None:
            item.audio_done = True

    def received_ms(self, item_id: str) -> int:
        item = self._items.get(item_id)
        return item.received_samples * 1000 // self.output_rate if item else 0

    def fully_heard(self, item_id: str) -> bool:
        """All of the item's audio has arrived and been handed to the line."""
        item = self._items.get(item_id)
        if item is None or not item.audio_done:
            return item is None  # an item without audio (text only) has nothing to hear
        return self.playout.played_samples(item_id) >= self.playout.received_samples(item_id)

    # -- the caller's speech -----------------------------------------------------------------
    def speech_started(self, agent_speaking: bool) -> bool:
        """The server heard the caller: True to cut now, False while the trigger is held."""
        if self._pending:
            return False  # still measuring the burst the server reported first
        if self.min_ms > 0 and agent_speaking:
            self._pending = True
            self._loud_ms = 0.0
            return False
        return True

    def speech_stopped(self) -> None:
        """Speech ended: a trigger still held was too short to be speech; keep talking."""
        if self._pending:
            self.ignored += 1
        self._pending = False

    def caller_audio(self, ms: float, level_dbfs: float) -> bool:
        """Caller audio measured locally: True once a held barge-in is loud enough to cut."""
        if not self._pending:
            return False
        if level_dbfs >= self.min_dbfs:
            self._loud_ms += ms
        if self._loud_ms < self.min_ms:
            return False
        self._pending = False
        return True

    @property
    def pending(self) -> bool:
        """A barge-in trigger is held until the caller has been loud for ``min_ms``."""
        return self._pending

    def cut(self) -> Cut | None:
        """Flush the playout; the agent audio this cut short, or None when none was playing."""
        item_id, played = self.playout.flush()
        if item_id is None:
            return None
        item = self._items.get(item_id)
        if item is None:
            return None
        heard_all = item.audio_done and self.playout.played_samples(item_id) >= (
            self.playout.received_samples(item_id)
        )
        if heard_all:
            return None
        # Playout counts at the call's rate; the limit is what the model sent for the item.
        heard_ms = played * 1000 // self.playout.sample_rate
        self.interruptions += 1
        return Cut(item_id, min(heard_ms, self.received_ms(item_id)), item.response_id)

    def reset(self) -> None:
        """A new realtime session replaced a dropped one."""
        self._pending = False


#: GPT-Live's audio counts as stopped after this long without a delta (its deltas are about
#: 100 ms of audio each, sent as they are due or ahead of time).
YIELD_GAP_MS = 100
#: A caller transcript starts a yield only this long: later, stopped audio is just the end
#: of what the agent said.
YIELD_WINDOW_MS = 1500
#: Over WebRTC the server stops its own track when it yields, and the track lags the data
#: channel: the audio still arriving at the transcript was sent before the server heard the
#: caller (the Live adapter drops it), so no gap is waited for. A model talking on over a
#: backchannel is heard again once its new audio arrives (a new turn), the lag later.
WEBRTC_YIELD_GAP_MS = 0.0


class YieldWatch:
    """GPT-Live's barge-in: the server gave the caller the floor.

    Its sign is the caller's transcript arriving while its audio has stopped: then what is
    still queued for the caller is audio the server sent ahead and no longer stands behind,
    and is dropped. Audio arriving after the transcript (the model talking on over an
    "mm-hm", or its next reply) cancels the yield: backchannels do not cut the agent off.
    """

    def __init__(self, gap_ms: float = YIELD_GAP_MS, window_ms: float = YIELD_WINDOW_MS) -> None:
        self.gap_ms = gap_ms
        self.window_ms = window_ms
        self._last_audio: float | None = None
        self._heard_at: float | None = None

    def audio(self, now: float) -> None:
        """The server sent agent audio at ``now``."""
        self._last_audio = now
        self._heard_at = None

    def caller_heard(self, now: float) -> None:
        """A caller transcript arrived at ``now``."""
        if self._heard_at is None:
            self._heard_at = now

    def due(self, now: float, agent_queued: bool) -> bool:
        """True (once) when queued agent audio should be dropped at ``now``."""
        heard = self._heard_at
        if heard is None:
            return False
        if now - heard > self.window_ms or not agent_queued:
            self._heard_at = None
            return False
        if self._last_audio is not None and now - self._last_audio < self.gap_ms:
            return False
        self._heard_at = None
        return True

    @property
    def next_deadline(self) -> float | None:
        """When ``due`` may next turn True, while a yield is pending."""
        if self._heard_at is None:
            return None
        if self._last_audio is None:
            return self._heard_at
        return max(self._heard_at, self._last_audio + self.gap_ms)
