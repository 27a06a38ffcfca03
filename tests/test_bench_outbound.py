"""bench/outbound.py with one call: it runs, writes plain JSON, and its figures are a placed
call's (answered, a person detected, the agent heard after the verdict)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import outbound
from bench.harness import write_json

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(60)]


async def test_outbound_bench_one_call(tmp_path: Path) -> None:
    path = tmp_path / "outbound.json"
    write_json(await outbound.run(1, ["baresip"]), path)
    result = json.loads(path.read_text())
    (call,) = result["calls"]
    assert call["exit"] == 0 and call["outcome"] == "answered"
    assert call["amd_verdict"] == "human"
    assert 0 <= call["progress_ms"] <= call["answer_ms"]
    # Not before the verdict (give or take the two clocks the figures come from).
    assert call["first_agent_audio_ms"] > call["amd_decided_ms"] - 50
    assert "first_agent_audio_ms" in outbound.format_table(result)
