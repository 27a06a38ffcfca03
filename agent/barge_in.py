"""Barge-in: what to stop, what to tell the model, which late audio to drop. No I/O.

Fed with the response events of one call, the caller's speech events and caller audio
levels; it drives the call's :class:`~agent.audio.playout.Playout` and returns the client
events to send. Everything is decided on the loop thread; the media clock thread only ever
sees the playout buffer, so a flush here silences the very next 20 ms pull.

``audio_end_ms`` of the truncate is the audio of the item actually handed to the media port
(sample-accurate at 8 kHz). What the resampler still held back, or what was queued behind the
cut, was never heard and is not counted. It never exceeds the audio received for the item.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from agent.audio.playout import Playout

#: Received audio is tracked at the model's rate (24 kHz PCM16, or 8 kHz for G.711 sessions).
_MAX_TRACKED = 64


@dataclass
class _Item:
    response_id: str
    received_samples: int = 0  # at the model's output rate
    audio_done: bool = False


@dataclass
class Interruption:
    """What one caller turn started during a response did; ``events`` are the client events
    to send, in order. It is a barge-in (``cut``) only when it cut agent audio short: a
    caller who speaks while the agent is silent interrupts nothing."""

    item_id: str | None
    audio_end_ms: int | None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cut(self) -> bool:
        return self.item_id is not None


class BargeIn:
    """Per-call barge-in logic.

    ``server_interrupts`` mirrors the session's ``turn_detection.interrupt_response``: when
    the server already cancels its response on speech, we must not send ``response.cancel``.
    ``echo_guard_ms`` > 0 holds a barge-in until that much caller speech energy has been
    measured locally (phones echo the agent back into the microphone).
    """

    def __init__(
        self,
        playout: Playout,
        *,
        output_rate: int = 24000,
        server_interrupts: bool = True,
        echo_guard_ms: int = 0,
        echo_guard_dbfs: float = -40.0,
    ) -> None:
        self.playout = playout
        self.output_rate = output_rate
        self.server_interrupts = server_interrupts
        self.echo_guard_ms = echo_guard_ms
        self.echo_guard_dbfs = echo_guard_dbfs
        self._items: OrderedDict[str, _Item] = OrderedDict()
        self._active_response: str | None = None
        self._interrupted_responses: set[str] = set()
        self._cancel_sent_for: str | None = None
        self._pending = False
        self._loud_ms = 0.0
        #: Barge-ins: caller turns that cut agent audio short.
        self.interruptions = 0
        self.stale_deltas_dropped = 0

    # -- the model's side --------------------------------------------------------------------
    def response_created(self, response_id: str) -> None:
        self._active_response = response_id

    def response_done(self, response_id: str) -> None:
        if self._active_response == response_id:
            self._active_response = None
        self._interrupted_responses.discard(response_id)

    def accept_audio(self, response_id: str, item_id: str, samples: int) -> bool:
        """Account a delta of ``samples`` (output rate); False: it is stale, drop it."""
        if response_id in self._interrupted_responses:
            self.stale_deltas_dropped += 1
            return False
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _Item(response_id)
            while len(self._items) > _MAX_TRACKED:
                self._items.popitem(last=False)
        item.received_samples += samples
        return True

    def audio_done(self, item_id: str) -> None:
        item = self._items.get(item_id)
        if item is not None:
            item.audio_done = True

    def fully_heard(self, item_id: str) -> bool:
        """All of the item's audio has arrived and been handed to the line."""
        item = self._items.get(item_id)
        if item is None or not item.audio_done:
            return item is None  # an item without audio (text only) has nothing to hear
        return self.playout.played_samples(item_id) >= self.playout.received_samples(item_id)

    def received_ms(self, item_id: str) -> int:
        item = self._items.get(item_id)
        return item.received_samples * 1000 // self.output_rate if item else 0

    @property
    def agent_speaking(self) -> bool:
        """True while agent audio is queued for, or still arriving to, the caller."""
        if self.playout.queued_samples > 0:
            return True
        return self._active_response is not None and self._active_response not in (
            self._interrupted_responses
        )

    # -- the caller's side -------------------------------------------------------------------
    def speech_started(self) -> Interruption | None:
        """The server heard the caller start talking. Interrupt now, or hold for the guard."""
        if self.echo_guard_ms > 0 and self.agent_speaking:
            self._pending = True
            self._loud_ms = 0.0
            return None
        return self._interrupt()

    def speech_stopped(self) -> None:
        """Speech ended before the echo guard was satisfied: it was echo, keep talking."""
        self._pending = False

    def caller_audio(self, ms: float, level_dbfs: float) -> Interruption | None:
        """Caller audio measured locally; completes a held barge-in once it is loud enough."""
        if not self._pending:
            return None
        if level_dbfs >= self.echo_guard_dbfs:
            self._loud_ms += ms
        if self._loud_ms < self.echo_guard_ms:
            return None
        self._pending = False
        return self._interrupt()

    @property
    def barge_in_pending(self) -> bool:
        return self._pending

    def _interrupt(self) -> Interruption:
        item_id, played = self.playout.flush()
        result = Interruption(None, None)
        response = self._active_response
        if item_id is not None:
            item = self._items.get(item_id)
            if item is not None:
                response = item.response_id
                heard_all = item.audio_done and self.playout.played_samples(item_id) >= (
                    self.playout.received_samples(item_id)
                )
                if not heard_all:
                    # Playout counts at 8 kHz; the limit is what the model sent for the item.
                    heard_ms = played * 1000 // self.playout.sample_rate
                    end_ms = min(heard_ms, self.received_ms(item_id))
                    result = Interruption(item_id, end_ms)
                    result.events.append(
                        {
                            "type": "conversation.item.truncate",
                            "item_id": item_id,
                            "content_index": 0,
                            "audio_end_ms": end_ms,
                        }
                    )
        if response is not None and response == self._active_response:
            self._interrupted_responses.add(response)
            if not self.server_interrupts and self._cancel_sent_for != response:
                self._cancel_sent_for = response
                result.events.append({"type": "response.cancel"})
        if result.cut:
            self.interruptions += 1
        return result

    def session_restarted(self) -> None:
        """A new realtime session replaced a dropped one: forget the old responses."""
        self._active_response = None
        self._interrupted_responses.clear()
        self._cancel_sent_for = None
        self._pending = False

    def cancel_rejected(self) -> None:
        """The server said no response was active: our cancel raced its response.done."""
        self._cancel_sent_for = None
