"""bench/amd.py in quick mode: it runs, writes plain JSON, and its figures are the detector's
(every quick case decided right at the quiet noise levels, beeps found where they were put)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import amd
from bench.harness import write_json


def test_amd_bench_quick(tmp_path: Path) -> None:
    path = tmp_path / "amd.json"
    write_json(amd.run(quick=True), path)
    result = json.loads(path.read_text())
    assert [row["noise_dbfs"] for row in result["levels"]] == [None, -40.0]
    for row in result["levels"]:
        assert row["accuracy"] == 1.0, row
        assert row["beeps_found"] == row["beeps"] == 2
        assert row["beep_error_ms"]["max"] <= 100
    assert len(result["cases"]) == 2 * 2 * 4
    assert "detector CPU" in amd.format_table(result)
