"""Log rate limits, call ids, and what a transcript file may contain."""

from __future__ import annotations

import json
from pathlib import Path

from agent.observe.ids import new_call_id
from agent.observe.logging import register_secret
from agent.observe.ratelimit import KeyedRateLimit, quote
from agent.observe.transcript import RecordWriter


def test_rate_limit_lets_one_line_per_key_and_counts_the_rest() -> None:
    now = [0.0]
    limit = KeyedRateLimit(interval_s=10.0, max_keys=2, clock=lambda: now[0])
    assert limit.check("a") == (True, 0)
    assert [limit.allow("a") for _ in range(5)] == [False] * 5
    assert limit.allow("b")
    now[0] = 10.0
    assert limit.check("a") == (True, 5)
    limit.allow("c")  # a third key pushes out the oldest
    assert len(limit._last) == 2


def test_quote_cuts_and_flattens() -> None:
    assert quote("a\r\nb") == "a\\r\\nb"
    long = quote("x" * 500, 10)
    assert long.startswith("x" * 10) and "490 more" in long


def test_call_ids_are_unique_and_sort_by_time() -> None:
    ids = {new_call_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 26 for i in ids)
    assert new_call_id(1.0) < new_call_id(1.002) < new_call_id(2.0) < new_call_id(1e9)


def test_transcript_is_created_with_its_first_line_and_scrubs_secrets(tmp_path: Path) -> None:
    key = "sk-live-0123456789abcdefSECRET"
    register_secret(key)
    path = tmp_path / "call.jsonl"
    transcript = RecordWriter(path, "c1")
    assert not path.exists() and not transcript.started
    transcript.event("realtime_session_lost", reason=f"1008 bad key Bearer {key}")
    transcript.event("tool_call", arguments={"api_key": "hunter2", "city": "Oslo"}, error=key)
    transcript.close()
    text = path.read_text()
    assert key not in text and "hunter2" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["reason"] == "1008 bad key Bearer ***"
    assert lines[1]["arguments"] == {"api_key": "***", "city": "Oslo"}


def test_a_transcript_never_written_leaves_no_file(tmp_path: Path) -> None:
    transcript = RecordWriter(tmp_path / "never.jsonl", "c2")
    transcript.close()
    assert list(tmp_path.iterdir()) == []
