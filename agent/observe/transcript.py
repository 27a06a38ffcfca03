"""Per-call transcript, one JSON object per line, written as the call goes.

Each line is flushed when written, so a crash or a dropped connection loses nothing already
said. The file is created with the first line, so a call refused before it was answered
leaves none. Every line passes the log scrubber first: a server's close reason or a tool's
error that quotes an API key is written with the key masked.

Agent lines are held until their text is final and it is known what the caller heard: the
transcript is done and its audio was played out; or the caller interrupted and the server
confirmed the truncation; or the caller hung up mid-reply. An interrupted line is cut to the
share of the text the caller heard and marked ``interrupted`` (with ``cut_by``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from agent.observe.logging import redact


@dataclass
class _AgentLine:
    text: str = ""
    written: bool = False
    interrupted: bool = False
    final: bool = False  # the server's transcript of the item is complete


def heard_prefix(text: str, heard_ms: int, total_ms: int) -> str:
    """The part of ``text`` spoken in the first ``heard_ms`` of ``total_ms`` of audio.

    Speech rate is taken as even over the item, and the cut falls back to a word boundary: an
    estimate, since the API sends no timing for transcript text.
    """
    if total_ms <= 0 or heard_ms >= total_ms:
        return text
    cut = int(len(text) * max(heard_ms, 0) / total_ms)
    prefix = text[:cut]
    if cut < len(text) and not text[cut].isspace():
        prefix = prefix.rsplit(" ", 1)[0] if " " in prefix else ""
    return prefix.rstrip()


class Transcript:
    """Writes one call's transcript to ``path`` (JSONL); ``path=None`` keeps it in memory."""

    def __init__(self, path: Path | None, call_id: str) -> None:
        self.call_id = call_id
        self.lines: list[dict[str, Any]] = []
        self._agent: dict[str, _AgentLine] = {}
        self._file: IO[str] | None = None
        self._closed = False
        self.path = path

    def _write(self, line: dict[str, Any]) -> dict[str, Any]:
        line = redact({"ts": round(time.time(), 3), "call_id": self.call_id, **line})
        self.lines.append(line)
        if self._file is None and self.path is not None and not self._closed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        if self._file is not None:
            self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
            self._file.flush()
        return line

    @property
    def started(self) -> bool:
        """Something was written (a call that was never answered writes nothing)."""
        return bool(self.lines)

    def caller(self, item_id: str, text: str) -> dict[str, Any]:
        return self._write({"role": "caller", "item_id": item_id, "text": text.strip()})

    def agent_delta(self, item_id: str, delta: str) -> None:
        line = self._agent.setdefault(item_id, _AgentLine())
        if not line.written:
            line.text += delta

    def agent_done(self, item_id: str, text: str | None) -> dict[str, Any] | None:
        """The agent's transcript for ``item_id`` is complete (not written if interrupted)."""
        line = self._agent.setdefault(item_id, _AgentLine())
        if text is not None:
            line.text = text
        if line.written or line.interrupted:
            return None
        line.written = True
        return self._write({"role": "agent", "item_id": item_id, "text": line.text.strip()})

    def agent_final(self, item_id: str, text: str | None) -> None:
        """The item's transcript is complete, but not yet heard: held until ``agent_done``."""
        line = self._agent.setdefault(item_id, _AgentLine())
        if text is not None:
            line.text = text
        line.final = True

    def held_final_items(self) -> list[str]:
        """Items whose transcript is complete and waits for its audio to be heard."""
        return [
            item_id
            for item_id, line in self._agent.items()
            if line.final and not line.written and not line.interrupted
        ]

    def agent_interrupted(self, item_id: str) -> None:
        """Barge-in cut this item: hold its line until the truncation is confirmed."""
        self._agent.setdefault(item_id, _AgentLine()).interrupted = True

    def agent_truncated(
        self, item_id: str, heard_ms: int, total_ms: int, cause: str = "barge-in"
    ) -> dict[str, Any] | None:
        """The caller heard only ``heard_ms`` of the item: cut by ``cause``
        (``barge-in`` or ``hang-up``)."""
        line = self._agent.setdefault(item_id, _AgentLine())
        if line.written:
            return None
        line.written = True
        return self._write(
            {
                "role": "agent",
                "item_id": item_id,
                "text": heard_prefix(line.text.strip(), heard_ms, total_ms),
                "interrupted": True,
                "heard_ms": heard_ms,
                "cut_by": cause,
            }
        )

    def pending_agent_items(self) -> list[tuple[str, bool]]:
        """Agent items with text still held: (item id, cut by a barge-in not yet confirmed)."""
        return [
            (item_id, line.interrupted)
            for item_id, line in self._agent.items()
            if not line.written and line.text.strip()
        ]

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        """A non-speech line: call start/end, tool calls, DTMF."""
        return self._write({"role": "event", "kind": kind, **fields})

    def close(self) -> None:
        """Write what is still held (e.g. an interrupted line never confirmed), then close."""
        for item_id, line in self._agent.items():
            if not line.written and line.text.strip():
                line.written = True
                fields: dict[str, Any] = {"role": "agent", "item_id": item_id}
                fields["text"] = line.text.strip()
                if line.interrupted:
                    fields["interrupted"] = True
                self._write(fields)
        self._closed = True
        if self._file is not None:
            self._file.close()
            self._file = None
