"""Protocol oracle: realtime events checked against the ``openai`` package's pydantic models.

The SDK models describe every client and server event of both Realtime dialects (GA in
``openai.types.realtime``, beta/Azure-preview in ``openai.types.beta.realtime``), of GPT-Live's
primary WebSocket (``openai.types.live``) and of Responses WebSocket mode
(``openai.types.responses``). An event
whose ``type`` the dialect does not know fails against the whole union; a known ``type`` is
validated (as JSON, strictly) against its own model, so the error names the offending field
instead of listing every member of the union. The SDK models allow extra fields (the live
API sends a few they do not declare), so a misspelt *optional* field is not caught here.
"""

from __future__ import annotations

import json
import typing
from functools import cache
from typing import Any

import openai.types.beta.realtime as beta
import openai.types.live as live
import openai.types.realtime as ga
import openai.types.responses as responses
from pydantic import BaseModel, TypeAdapter

from agent.realtime.dialect import Dialect

#: The protocols besides the two Realtime dialects.
LIVE = "live"
RESPONSES = "responses"

_UNIONS: dict[tuple[str, str], Any] = {
    (Dialect.GA, "server"): ga.RealtimeServerEvent,
    (Dialect.BETA, "server"): beta.RealtimeServerEvent,
    (Dialect.GA, "client"): ga.RealtimeClientEvent,
    (Dialect.BETA, "client"): beta.RealtimeClientEvent,
    (LIVE, "server"): live.ServerEvent,
    (LIVE, "client"): live.ClientEvent,
    (RESPONSES, "server"): responses.ResponsesServerEvent,
    (RESPONSES, "client"): responses.ResponsesClientEvent,
}


def _members(union: Any) -> tuple[Any, ...]:
    """The models of an event union, with or without its ``Annotated`` wrapper."""
    if typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    return typing.get_args(union)


@cache
def _union_adapter(protocol: str, side: str) -> TypeAdapter[Any]:
    return TypeAdapter(_UNIONS[protocol, side])


@cache
def _models_by_type(protocol: str, side: str) -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {}
    for model in _members(_UNIONS[protocol, side]):
        for literal in typing.get_args(model.model_fields["type"].annotation):
            models[literal] = model
    return models


def _protocol(name: Dialect | str) -> str:
    return name if name in (LIVE, RESPONSES) else Dialect(name)


def _validate(protocol: Dialect | str, side: str, event: dict[str, Any]) -> BaseModel:
    key = _protocol(protocol)
    # Validate the JSON text in strict mode: that is what crosses the wire, and strictness
    # stops pydantic from quietly coercing e.g. "0" into an int index.
    wire = json.dumps(event)
    model = _models_by_type(key, side).get(str(event.get("type")))
    if model is None:
        return _union_adapter(key, side).validate_json(wire, strict=True)
    return model.model_validate_json(wire, strict=True)


def validate_server_event(protocol: Dialect | str, event: dict[str, Any]) -> BaseModel:
    """The SDK model of a server event of ``protocol`` (a Realtime dialect, ``"live"`` or
    ``"responses"``); raises ``pydantic.ValidationError`` if invalid."""
    return _validate(protocol, "server", event)


def validate_client_event(protocol: Dialect | str, event: dict[str, Any]) -> BaseModel:
    """The SDK model of a client event of ``protocol``; raises ``pydantic.ValidationError``
    if invalid."""
    return _validate(protocol, "client", event)


def server_event_types(protocol: Dialect | str) -> frozenset[str]:
    """Every server event ``type`` the protocol defines."""
    return frozenset(_models_by_type(_protocol(protocol), "server"))


def client_event_types(protocol: Dialect | str) -> frozenset[str]:
    """Every client event ``type`` the protocol defines."""
    return frozenset(_models_by_type(_protocol(protocol), "client"))
