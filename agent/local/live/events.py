"""The server events of a GPT-Live session: their shapes, and the one queue they leave by.

Every part of the session writes into its connection's ``LiveOutbox``, so events leave in the
order things happened whichever part produced them. Events carry a fresh ``event_id``, and
``client_event_id`` when they answer a client event that had one, except output audio deltas:
on the primary WebSocket those are bare (``type`` and ``delta``), as the real server sends
them, because they are the bulk of the traffic.
"""

from __future__ import annotations

import base64
from typing import Any

from agent.local.events import Event, ProtocolError, new_id

DEFAULT_ERROR_CODE = "invalid_request"
"""Live errors always have a code; a ProtocolError without one gets this."""


class LiveOutbox:
    """Events waiting to be returned by ``receive`` or ``poll``, oldest first."""

    def __init__(self) -> None:
        self._queue: list[Event] = []

    def send(self, type_: str, *, client_event_id: str | None = None, **fields: Any) -> None:
        """Queue a ``type_`` event with ``fields``, answering ``client_event_id`` if given."""
        self._queue.append(event(type_, client_event_id=client_event_id, **fields))

    def audio(self, chunk: bytes) -> None:
        """Queue an output audio chunk, already in the session's format."""
        delta = base64.b64encode(chunk).decode("ascii")
        self._queue.append({"type": "session.output_audio.delta", "delta": delta})

    def put(self, *events: Event) -> None:
        self._queue.extend(events)

    def drain(self) -> list[Event]:
        """Everything queued, oldest first; the outbox is empty afterwards."""
        out, self._queue = self._queue, []
        return out


def event(type_: str, *, client_event_id: str | None = None, **fields: Any) -> Event:
    """A ``type_`` server event with a fresh ``event_id``."""
    out: Event = {"type": type_, "event_id": new_id("event"), **fields}
    if client_event_id is not None:
        out["client_event_id"] = client_event_id
    return out


def error_event(err: ProtocolError, client_event_id: str | None = None) -> Event:
    """The ``error`` event for ``err``; the id of the client event it answers is in both places
    the SDK looks (the event's and the error's ``client_event_id``)."""
    body: dict[str, Any] = {
        "type": err.kind,
        "code": err.code or DEFAULT_ERROR_CODE,
        "message": err.message,
        "param": err.param,
    }
    if client_event_id is not None:
        body["client_event_id"] = client_event_id
    return event("error", client_event_id=client_event_id, error=body)


def timeline_ms(seconds: float) -> int:
    """A position on the session timeline (ms from the session's start) as the wire has it."""
    return max(round(seconds * 1000), 0)
