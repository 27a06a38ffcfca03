"""Protocol oracle: realtime events checked against the ``openai`` package's pydantic models.

The SDK models describe every client and server event of both dialects (GA in
``openai.types.realtime``, beta/Azure-preview in ``openai.types.beta.realtime``). An event
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
import openai.types.realtime as ga
from pydantic import BaseModel, TypeAdapter

from agent.realtime.dialect import Dialect

_UNIONS: dict[tuple[Dialect, str], Any] = {
    (Dialect.GA, "server"): ga.RealtimeServerEvent,
    (Dialect.BETA, "server"): beta.RealtimeServerEvent,
    (Dialect.GA, "client"): ga.RealtimeClientEvent,
    (Dialect.BETA, "client"): beta.RealtimeClientEvent,
}


@cache
def _union_adapter(dialect: Dialect, side: str) -> TypeAdapter[Any]:
    return TypeAdapter(_UNIONS[dialect, side])


@cache
def _models_by_type(dialect: Dialect, side: str) -> dict[str, type[BaseModel]]:
    union = typing.get_args(_UNIONS[dialect, side])[0]  # strip Annotated[..., discriminator]
    models: dict[str, type[BaseModel]] = {}
    for model in typing.get_args(union):
        for literal in typing.get_args(model.model_fields["type"].annotation):
            models[literal] = model
    return models


def _validate(dialect: Dialect | str, side: str, event: dict[str, Any]) -> BaseModel:
    dialect = Dialect(dialect)
    # Validate the JSON text in strict mode: that is what crosses the wire, and strictness
    # stops pydantic from quietly coercing e.g. "0" into an int index.
    wire = json.dumps(event)
    model = _models_by_type(dialect, side).get(str(event.get("type")))
    if model is None:
        return _union_adapter(dialect, side).validate_json(wire, strict=True)
    return model.model_validate_json(wire, strict=True)


def validate_server_event(dialect: Dialect | str, event: dict[str, Any]) -> BaseModel:
    """The SDK model of a server event; raises ``pydantic.ValidationError`` if invalid."""
    return _validate(dialect, "server", event)


def validate_client_event(dialect: Dialect | str, event: dict[str, Any]) -> BaseModel:
    """The SDK model of a client event; raises ``pydantic.ValidationError`` if invalid."""
    return _validate(dialect, "client", event)


def server_event_types(dialect: Dialect | str) -> frozenset[str]:
    """Every server event ``type`` the dialect defines."""
    return frozenset(_models_by_type(Dialect(dialect), "server"))


def client_event_types(dialect: Dialect | str) -> frozenset[str]:
    """Every client event ``type`` the dialect defines."""
    return frozenset(_models_by_type(Dialect(dialect), "client"))
