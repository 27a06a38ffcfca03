"""The call's transcript lines, decided without I/O: what to write and when.

Agent lines are held until their text is final and it is known what the caller heard: the
transcript is done and its audio was played out; or the caller interrupted and the server
confirmed the truncation; or the caller hung up mid-reply. An interrupted line is cut to the
share of the text the caller heard and marked ``interrupted`` (with ``cut_by``). Lines come
out as plain dicts; ``agent.observe.transcript.RecordWriter`` stamps and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.bridge.requests import Turn

Line = dict[str, Any]
#: A replacement session is told at most this many of the latest lines (GPT-Live's startup
#: history takes 128 messages).
HISTORY_TURNS = 128


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


@dataclass
class _AgentLine:
    text: str = ""
    written: bool = False
    interrupted: bool = False  # cut by a barge-in, truncation not confirmed yet
    final: bool = False  # the server's transcript of the item is complete


class TranscriptBook:
    """One call's transcript decisions."""

    def __init__(self) -> None:
        self._agent: dict[str, _AgentLine] = {}
        self._said: list[Turn] = []
        #: A caller turn still being transcribed (GPT-Live): (item id, text so far).
        self._partial: tuple[str, str] | None = None

    @property
    def history(self) -> tuple[Turn, ...]:
        """What was said so far, as heard (agent lines cut to what the caller heard), for a
        new session to carry on from: the latest ``HISTORY_TURNS`` lines."""
        said = self._said
        if self._partial is not None and self._partial[1]:
            # What the caller has said so far of a turn still open is part of the conversation.
            said = [*said, Turn("user", self._partial[1])]
        return tuple(said[-HISTORY_TURNS:])

    def caller(self, item_id: str, text: str) -> Line:
        if self._partial is not None and self._partial[0] == item_id:
            self._partial = None
        self._remember("user", text)
        return {"role": "caller", "item_id": item_id, "text": text.strip()}

    def caller_partial(self, item_id: str, text: str) -> None:
        """The caller's turn ``item_id`` so far (it is written by ``caller`` when it closes)."""
        self._partial = (item_id, text.strip())

    def close_caller_partial(self) -> Line | None:
        """Write the open caller turn as it stands (its session is gone); None if none."""
        partial, self._partial = self._partial, None
        if partial is None or not partial[1]:
            return None
        return self.caller(*partial)

    def event(self, kind: str, **fields: Any) -> Line:
        """A non-speech line: call start and end, tool calls, DTMF, a session lost."""
        return {"role": "event", "kind": kind, **fields}

    def agent_delta(self, item_id: str, delta: str) -> None:
        line = self._agent.setdefault(item_id, _AgentLine())
        if not line.written:
            line.text += delta

    def agent_final(self, item_id: str, text: str | None) -> None:
        """The item's transcript is complete, but not yet heard: held until ``heard``."""
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

    def heard(self, item_id: str) -> Line | None:
        """The caller heard the whole item: its line, once."""
        line = self._agent.setdefault(item_id, _AgentLine())
        if line.written or line.interrupted:
            return None
        line.written = True
        self._remember("assistant", line.text)
        return {"role": "agent", "item_id": item_id, "text": line.text.strip()}

    def agent_interrupted(self, item_id: str) -> None:
        """Barge-in cut this item: hold its line until the truncation is confirmed."""
        self._agent.setdefault(item_id, _AgentLine()).interrupted = True

    def agent_truncated(
        self, item_id: str, heard_ms: int, total_ms: int, cause: str = "barge-in"
    ) -> Line | None:
        """The caller heard only ``heard_ms`` of the item, cut by ``cause`` (``barge-in`` or
        ``hang-up``): its line, once, with the text cut to the share heard."""
        line = self._agent.setdefault(item_id, _AgentLine())
        if line.written:
            return None
        line.written = True
        text = heard_prefix(line.text.strip(), heard_ms, total_ms)
        self._remember("assistant", text)
        return {
            "role": "agent",
            "item_id": item_id,
            "text": text,
            "interrupted": True,
            "heard_ms": heard_ms,
            "cut_by": cause,
        }

    def _remember(self, role: str, text: str) -> None:
        if text.strip():
            self._said.append(Turn(role, text.strip()))

    def pending_agent_items(self) -> list[tuple[str, bool]]:
        """Agent items with text still held: (item id, cut by a barge-in not yet confirmed)."""
        return [
            (item_id, line.interrupted)
            for item_id, line in self._agent.items()
            if not line.written and line.text.strip()
        ]
