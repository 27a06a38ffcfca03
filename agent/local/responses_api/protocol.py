"""The Responses API's WebSocket mode as a sans-I/O state machine: one instance per connection.

Contract
--------

The same as ``agent.local.live.protocol``'s, so the same transport serves it:

- ``start()`` returns nothing: the client speaks first, with ``response.create``.
- ``receive(message, now)`` handles one client frame and returns every event of the
  response it asked for, from ``response.created`` to ``response.completed`` (the brain is
  pure and fast, so a response is answered whole). A malformed request gets one ``error``
  event and changes nothing; ``receive`` raises only on a bug of ours, which the transport
  answers with ``error_event``.
- ``poll`` returns nothing and ``next_deadline`` is None: nothing happens between frames.
  ``waker`` is never called.
- ``ended`` stays False: a Responses connection lasts until the client closes it.
- ``close()`` forgets the connection's state.

Responses run one after another on a connection. As on the real server with ``store:
false``, the connection keeps its most recent response (input and output) in memory, so a
request may continue from it with ``previous_response_id`` and only the new input items;
any other ``previous_response_id`` is ``previous_response_not_found``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.local.brain import Brain
from agent.local.client_input import parse
from agent.local.events import Event, ProtocolError, new_id
from agent.local.responses_api.answers import answer
from agent.local.responses_api.requests import CreateRequest, parse_create
from agent.local.responses_api.stream import ResponseStream, error_event

MAX_CONTEXT_ITEMS = 512
"""Items of a continued chain kept for the next continuation; older ones are forgotten."""


class ResponsesProtocol:
    """One connection to the local Responses endpoint."""

    def __init__(
        self, *, brain: Brain | None = None, unix_time: Callable[[], float] = time.time
    ) -> None:
        """``brain`` answers (None: a fixed message for everything); ``unix_time`` dates the
        responses' ``created_at``."""
        self.waker: Callable[[], None] = _no_wake
        self._brain = brain
        self._unix_time = unix_time
        self._last: tuple[str, list[dict[str, Any]]] | None = None
        """The most recent response's id and its whole context (input, then output)."""

    # ---- the contract ----------------------------------------------------------------------

    def start(self) -> list[Event]:
        return []

    def receive(self, message: str | bytes, now: float) -> list[Event]:
        """Answer one ``response.create``; a malformed frame gets one ``error`` event."""
        try:
            event = parse(message)
            kind = event.get("type")
            if kind == "response.create":
                return self._create(parse_create(event))
            if kind == "response.steer":
                raise ProtocolError(
                    "'response.steer' is not supported by the local server: a response here "
                    "is complete before the next event is read.",
                    code="unsupported_event",
                    param="type",
                )
            raise ProtocolError(
                f"Invalid value: {kind!r}. Supported values are: 'response.create'.",
                code="invalid_value",
                param="type",
            )
        except ProtocolError as err:
            return [error_event(err)]

    def poll(self, now: float) -> list[Event]:
        return []

    def next_deadline(self) -> float | None:
        return None

    @property
    def ended(self) -> bool:
        return False

    def close(self) -> None:
        self._last = None

    def error_event(self, err: ProtocolError, client_event_id: str | None = None) -> Event:
        """An ``error`` event for ``err`` (Responses errors carry no client event id)."""
        return error_event(err)

    # ---- a response ------------------------------------------------------------------------

    def _create(self, request: CreateRequest) -> list[Event]:
        items = self._context(request.previous_response_id) + request.input
        reply = answer(self._brain, request, items) if request.generate else None
        stream = ResponseStream(request, new_id("resp"), self._unix_time())
        events = stream.run(reply)
        self._last = (stream.id, (items + stream.output)[-MAX_CONTEXT_ITEMS:])
        return events

    def _context(self, previous_response_id: str | None) -> list[dict[str, Any]]:
        """The items a continued response starts from."""
        if previous_response_id is None:
            return []
        if self._last is None or self._last[0] != previous_response_id:
            raise ProtocolError(
                f"Previous response with id '{previous_response_id}' not found. With store "
                "disabled, only the connection's most recent response can be continued.",
                code="previous_response_not_found",
                param="previous_response_id",
            )
        return list(self._last[1])


def _no_wake() -> None:
    """Nothing runs in the background, so there is never anything to wake."""
