"""The collector's pauses: each one timed into the metric, a long one logged (once a
minute), and start-up's objects frozen out of later collections."""

from __future__ import annotations

import gc

import structlog

from agent.observe.gc_pauses import LONG_PAUSE_S, GcPauses, settle
from agent.observe.metrics import AgentMetrics


def test_every_collection_is_timed_into_the_histogram() -> None:
    metrics = AgentMetrics(lambda: 0, lambda: True)
    pauses = GcPauses(metrics.observe_gc)
    pauses.install()
    try:
        gc.collect(2)
    finally:
        pauses.uninstall()
    text = metrics.exposition().decode()
    assert 'voice_agent_gc_pause_seconds_count{generation="2"} 1.0' in text
    # Uninstalled: no more observations.
    gc.collect(2)
    assert 'voice_agent_gc_pause_seconds_count{generation="2"} 1.0' in metrics.exposition().decode()


def test_a_long_pause_is_logged_once_a_minute() -> None:
    now = [0.0]
    seen: list[tuple[float, int]] = []
    pauses = GcPauses(lambda s, g: seen.append((s, g)), clock=lambda: now[0])
    with structlog.testing.capture_logs() as logs:
        for pause in (0.01, LONG_PAUSE_S + 0.07, LONG_PAUSE_S + 0.02, LONG_PAUSE_S + 0.03):
            pauses._on_gc("start", {"generation": 2})
            now[0] += pause
            pauses._on_gc("stop", {"generation": 2})
    assert [round(s, 2) for s, _ in seen] == [0.01, 0.12, 0.07, 0.08]
    long = [line for line in logs if line["event"] == "gc_pause_long"]
    assert len(long) == 1 and long[0]["ms"] == 120.0 and long[0]["generation"] == 2


def test_settle_freezes_what_start_up_made() -> None:
    try:
        frozen = settle()
        assert frozen == gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
