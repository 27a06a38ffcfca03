"""Writes one call's transcript, one JSON object per line, as the call goes.

What to write and when is decided by ``agent.bridge.transcript.TranscriptBook`` (and the
tools' own lines); this only stamps (time, call id), scrubs and writes. Each line is flushed
when written, so a crash or a dropped connection loses nothing already said. The file is
created with the first line, so a call refused before it was answered leaves none. Every
line passes the log scrubber first: a server's close reason or a tool's error that quotes an
API key is written with the key masked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from agent.observe.logging import redact


class RecordWriter:
    """Writes one call's transcript to ``path`` (JSONL); ``path=None`` keeps it in memory."""

    def __init__(self, path: Path | None, call_id: str) -> None:
        self.call_id = call_id
        self.path = path
        self.lines: list[dict[str, Any]] = []
        self._file: IO[str] | None = None
        self._closed = False

    def write(self, line: dict[str, Any]) -> dict[str, Any]:
        """Stamp, scrub and write ``line``; the line as written."""
        line = redact({"ts": round(time.time(), 3), "call_id": self.call_id, **line})
        self.lines.append(line)
        if self._file is None and self.path is not None and not self._closed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        if self._file is not None:
            self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
            self._file.flush()
        return line

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        """A non-speech line: call start/end, tool calls."""
        return self.write({"role": "event", "kind": kind, **fields})

    @property
    def started(self) -> bool:
        """Something was written (a call that was never answered writes nothing)."""
        return bool(self.lines)

    def close(self) -> None:
        self._closed = True
        if self._file is not None:
            self._file.close()
            self._file = None
