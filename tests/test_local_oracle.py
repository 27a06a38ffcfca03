"""The protocol oracle itself: it must accept real events and be able to fail."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agent.realtime.dialect import Dialect, OutputEvent, wire_name
from testbed.oracle import (
    client_event_types,
    server_event_types,
    validate_client_event,
    validate_server_event,
)

DIALECTS = [Dialect.GA, Dialect.BETA]


def delta(dialect: Dialect, **overrides: Any) -> dict[str, Any]:
    return {
        "type": wire_name(dialect, OutputEvent.AUDIO_DELTA),
        "event_id": "event_1",
        "response_id": "resp_1",
        "item_id": "item_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "AAAA",
        **overrides,
    }


@pytest.mark.parametrize("dialect", DIALECTS)
def test_valid_events_pass(dialect: Dialect) -> None:
    model = validate_server_event(dialect, delta(dialect))
    assert model.type == wire_name(dialect, OutputEvent.AUDIO_DELTA)  # type: ignore[attr-defined]
    validate_client_event(dialect, {"type": "input_audio_buffer.append", "audio": "AAAA"})
    validate_client_event(dialect, {"type": "response.cancel"})


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unknown_types_fail(dialect: Dialect) -> None:
    with pytest.raises(ValidationError):
        validate_server_event(dialect, {"type": "response.dance", "event_id": "event_1"})
    with pytest.raises(ValidationError):
        validate_client_event(dialect, {"type": "response.dance"})
    with pytest.raises(ValidationError):
        validate_server_event(dialect, {"event_id": "event_1"})


@pytest.mark.parametrize("dialect", DIALECTS)
def test_missing_and_mistyped_fields_fail(dialect: Dialect) -> None:
    incomplete = delta(dialect)
    del incomplete["item_id"]
    with pytest.raises(ValidationError, match="item_id"):
        validate_server_event(dialect, incomplete)
    # Strict: a numeric string is not an index.
    with pytest.raises(ValidationError, match="output_index"):
        validate_server_event(dialect, delta(dialect, output_index="0"))
    with pytest.raises(ValidationError):
        validate_client_event(dialect, {"type": "input_audio_buffer.append"})


def test_each_dialect_rejects_the_others_output_names() -> None:
    with pytest.raises(ValidationError):
        validate_server_event(Dialect.BETA, delta(Dialect.GA))
    with pytest.raises(ValidationError):
        validate_server_event(Dialect.GA, delta(Dialect.BETA))


def test_ga_session_update_needs_its_type() -> None:
    with pytest.raises(ValidationError):
        validate_client_event(Dialect.GA, {"type": "session.update", "session": {}})
    validate_client_event(Dialect.BETA, {"type": "session.update", "session": {}})


@pytest.mark.parametrize("dialect", DIALECTS)
def test_dialect_table_names_only_real_events(dialect: Dialect) -> None:
    names = server_event_types(dialect)
    for which in OutputEvent:
        assert wire_name(dialect, which) in names
    assert "response.cancel" in client_event_types(dialect)
