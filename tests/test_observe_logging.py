"""Secrets never reach a log line, whatever field or text they hide in."""

from __future__ import annotations

import io
import json

import structlog

from agent.observe.logging import configure_logging, register_secret

KEY = "sk-live-abcdef0123456789"


def test_secret_values_and_fields_are_masked() -> None:
    register_secret(KEY)
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    log = structlog.get_logger("t").bind(call_id="c1")
    log.info("connect", url=f"wss://x/?key={KEY}", headers={"api-key": KEY, "x": "ok"})
    log.info("boom", error=f"rejected {KEY}", api_key=KEY, nested=[{"Authorization": "Bearer z"}])
    text = out.getvalue()
    assert KEY not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["call_id"] == "c1"
    assert lines[0]["headers"] == {"api-key": "***", "x": "ok"}
    assert lines[1]["api_key"] == "***"
    assert lines[1]["error"] == "rejected ***"
    assert lines[1]["nested"] == [{"Authorization": "***"}]


def test_token_counts_are_data_but_a_token_named_string_is_masked() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    log = structlog.get_logger("t")
    usage = {"input_tokens": 120, "output_audio_tokens": 32, "seconds": 1.5}
    log.info("call_finished", usage=usage, access_token="abc123xyz", refresh_tokens="s3cret")
    (line,) = [json.loads(text) for text in out.getvalue().splitlines()]
    assert line["usage"] == usage
    assert line["access_token"] == "***" and line["refresh_tokens"] == "***"
