"""The post-call webhook's body: the call's record and its transcript, as one JSON object.

Built once, when the call ends, and stored as bytes in the outbox: every attempt sends (and
signs) exactly the same body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from agent.observe.logging import scrub

#: The body's ``type``, so a receiver that gets other kinds of event later can tell them apart.
CALL_ENDED = "call.ended"


def call_ended_body(
    delivery_id: str,
    record: Mapping[str, Any],
    transcript: Sequence[Mapping[str, Any]],
) -> bytes:
    """``{"type", "delivery_id", "call_id", "record", "transcript"}`` as UTF-8 JSON.

    ``record`` is the call's summary (the fields of its ``call_end`` line and more),
    ``transcript`` its transcript lines as written (already scrubbed by the record writer).
    The record's strings pass the scrubber too, so a known secret never leaves in a webhook;
    its keys are not masked, or usage counts such as ``input_tokens`` would be.
    """
    body = {
        "type": CALL_ENDED,
        "delivery_id": delivery_id,
        "call_id": record.get("call_id", ""),
        "record": _scrubbed(dict(record)),
        "transcript": [dict(line) for line in transcript],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    return value
