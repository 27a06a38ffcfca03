"""Retention of call files: what ``records.retention_days`` deletes, and when.

Only the agent's own call files are touched (``<time>-<call_id>.wav``, ``.json`` and
``.jsonl`` directly in the records directory), judged by their modification time, so whatever
else an operator keeps there is left alone. A file the agent is still writing is newer than any
sensible retention, and is never old enough to go.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import structlog

log = structlog.get_logger("records")

#: Once a day, after the sweep at start.
SWEEP_INTERVAL_S = 86_400.0
_CALL_FILE = re.compile(r"^\d{8}T\d{6}-[0-9A-HJKMNP-TV-Z]{26}\.(wav|json|jsonl)$")


def is_call_file(path: Path) -> bool:
    """A transcript, call record or recording the agent wrote."""
    return bool(_CALL_FILE.match(path.name))


def sweep(directory: Path, days: int, now: float | None = None) -> list[Path]:
    """Delete call files in ``directory`` older than ``days`` days; the files deleted."""
    if days <= 0 or not directory.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - days * 86_400
    removed = []
    for path in sorted(directory.iterdir()):
        if not is_call_file(path):
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue  # gone meanwhile
        except OSError as exc:
            log.warning("records_retention_failed", path=str(path), error=str(exc))
    return removed


async def keep_swept(directory: Path, days: int, interval_s: float = SWEEP_INTERVAL_S) -> None:
    """Sweep now and then every ``interval_s`` until cancelled (off the loop thread: a large
    directory on a slow disk must not stall calls)."""
    while True:
        removed = await asyncio.to_thread(sweep, directory, days)
        if removed:
            log.info("records_expired", files=len(removed), retention_days=days)
        await asyncio.sleep(interval_s)
