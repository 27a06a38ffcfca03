"""The server events a protocol step produced, queued in the order they must be sent.

Every part of the protocol (the input buffer, the conversation, the responses) writes into
the one outbox of its connection, so events leave in the order things happened whichever
part produced them.
"""

from __future__ import annotations

from typing import Any

from agent.local.events import Event, EventBuilder


class Outbox:
    """Events waiting to be returned by ``receive`` or ``poll``, built for one dialect."""

    def __init__(self, events: EventBuilder) -> None:
        self.events = events
        """The dialect's event shapes, for events that are more than a type and fields."""
        self._queue: list[Event] = []

    def send(self, type_: str, **fields: Any) -> None:
        """Queue a ``type_`` event with ``fields`` (and a fresh ``event_id``)."""
        self._queue.append(self.events.event(type_, **fields))

    def put(self, *events: Event) -> None:
        """Queue events already built."""
        self._queue.extend(events)

    def drain(self) -> list[Event]:
        """Everything queued, oldest first; the outbox is empty afterwards."""
        out, self._queue = self._queue, []
        return out
