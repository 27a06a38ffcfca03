"""The edge between the bridge and a wire protocol: what every protocol adapter offers.

An adapter parses each server message once into the bridge's typed events
(``agent.bridge.events``) and turns each of the bridge's requests into the wire messages of
its protocol (``agent.bridge.requests``). One adapter serves one session: GPT-Live's numbers
that session's turns itself, so a replacement session gets a new adapter.
"""

from __future__ import annotations

from typing import Any, Protocol

from agent.bridge.events import ServerEvent
from agent.bridge.requests import ClientRequest


class MalformedEvent(ValueError):
    """A server event of a known type without what it must carry."""

    def __init__(self, event_type: str, problem: str) -> None:
        super().__init__(f"{event_type}: {problem}")
        self.event_type = event_type
        self.problem = problem


class ProtocolAdapter(Protocol):
    """One session's protocol, both ways."""

    def parse(self, message: str | bytes) -> list[ServerEvent]:
        """The events in one server message, in order; none for a message that matters to no
        decision. Raises :class:`MalformedEvent` for a known event missing what it must carry
        (the shell logs it once per type and goes on)."""
        ...

    def encode(self, request: ClientRequest) -> list[str]:
        """The wire messages of ``request``, in order to send; none when the protocol has no
        such thing (GPT-Live has no truncation)."""
        ...

    def wire(self, request: ClientRequest) -> list[dict[str, Any]]:
        """What ``encode`` serialises, as dicts (for validation and tests)."""
        ...

    def creation(self, requests: list[ClientRequest]) -> dict[str, Any] | None:
        """The session configuration the transport's own set-up carries, from a session's
        first requests (GPT-Live over WebRTC: the SDP exchange's ``session``; ``encode``
        then sends nothing for it); None when the session is configured on the wire."""
        ...

    def track_audio(self, audio: bytes) -> list[ServerEvent]:
        """WebRTC: one frame of the model's media track (PCM16 at 48 kHz) as the bridge's
        events."""
        ...
