"""The conversation: its items in order, and the client events that add, read and edit them.

Items are kept in their dialect's wire shape (``events.Item``). History is bounded: past
``MAX_HISTORY`` items the oldest finished one is forgotten. A response's streaming message is
an item too; deleting or truncating it stops the response first (``before_cut``), since the
client has decided what of it stands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.local.client_input import checked_item, item_text, required
from agent.local.events import Item, ProtocolError, new_id
from agent.local.outbox import Outbox
from agent.local.replies import ToolResult

MAX_HISTORY = 64
"""Older conversation items are forgotten, keeping per-connection state bounded."""
_AUDIO_PARTS = ("output_audio", "audio")


@dataclass(frozen=True)
class Truncation:
    """A checked ``conversation.item.truncate``: cut ``item``'s audio at ``audio_end_ms``."""

    item: Item
    content_index: int
    audio_end_ms: int


class Conversation:
    """One connection's items, oldest first."""

    def __init__(self, out: Outbox, before_cut: Callable[[Item], None]) -> None:
        self.items: list[Item] = []
        self._out = out
        self._before_cut = before_cut

    def get(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.id == item_id), None)

    def add(self, item: Item, after: str | None = None, *, at_start: bool = False) -> str | None:
        """Insert ``item`` (at the end unless told otherwise); returns the previous item id."""
        if at_start:
            index = 0
        elif after is not None:
            index = next(i for i, existing in enumerate(self.items) if existing.id == after) + 1
        else:
            index = len(self.items)
        previous = self.items[index - 1].id if index > 0 else None
        self.items.insert(index, item)
        while len(self.items) > MAX_HISTORY:
            oldest = next((i for i, old in enumerate(self.items) if not old.streaming), None)
            if oldest is None:
                break
            del self.items[oldest]
        return previous

    def latest_user(self) -> Item | None:
        """The latest user message (audio or text), which a response answers."""
        return next(
            (item for item in reversed(self.items) if item.data.get("role") == "user"), None
        )

    def tool_result(self) -> ToolResult | None:
        """The output of a function call, when that is the latest turn (rather than a user
        message), with the call it answers."""
        turn = next(
            (
                item
                for item in reversed(self.items)
                if item.data.get("role") == "user"
                or item.data.get("type") == "function_call_output"
            ),
            None,
        )
        if turn is None or turn.data.get("type") != "function_call_output":
            return None
        call_id = turn.data.get("call_id")
        call = next(
            (
                item
                for item in self.items
                if item.data.get("type") == "function_call" and item.data.get("call_id") == call_id
            ),
            None,
        )
        data = call.data if call is not None else {}
        return ToolResult(
            name=str(data.get("name", "")),
            arguments=str(data.get("arguments", "{}")),
            output=str(turn.data.get("output", "")),
        )

    # ---- client events ---------------------------------------------------------------------

    def create(self, event: dict[str, Any]) -> None:
        """``conversation.item.create``."""
        raw = required(event, "item", dict)
        previous_id = event.get("previous_item_id")
        if previous_id is not None and previous_id != "root" and self.get(previous_id) is None:
            raise ProtocolError(
                f"Previous item with id '{previous_id}' not found.",
                code="item_create_invalid_previous_item_id",
                param="previous_item_id",
            )
        data = checked_item(raw)
        item_id = data.get("id") or new_id("item")
        if self.get(item_id) is not None:
            raise ProtocolError(
                f"Item with id '{item_id}' already exists.",
                code="item_create_duplicate_item_id",
                param="item.id",
            )
        data.update(id=item_id, object="realtime.item", status="completed")
        item = Item(data, text=item_text(data))
        previous = self.add(
            item,
            after=previous_id if previous_id not in (None, "root") else None,
            at_start=previous_id == "root",
        )
        self._out.put(*self._out.events.item_added(item, previous))

    def retrieve(self, event: dict[str, Any]) -> None:
        """``conversation.item.retrieve``."""
        item = self._find(event, "item_retrieve_invalid_item_id")
        self._out.send("conversation.item.retrieved", item=item.wire())

    def delete(self, event: dict[str, Any]) -> None:
        """``conversation.item.delete``."""
        item = self._find(event, "item_delete_invalid_item_id")
        self._before_cut(item)
        self.items.remove(item)
        self._out.send("conversation.item.deleted", item_id=item.id)

    def truncate(self, event: dict[str, Any]) -> None:
        """``conversation.item.truncate``: the client played an assistant message's audio only
        up to ``audio_end_ms``."""
        cut = self._checked_truncation(event)
        item = cut.item
        self._before_cut(item)
        item.audio_ms = float(cut.audio_end_ms)
        # As the real API does, drop the transcript: the caller may not have heard any of it
        # past the cut, and text the user never heard must not steer the conversation.
        for part in item.data["content"]:
            if part.get("type") in _AUDIO_PARTS:
                part["transcript"] = ""
        self._out.send(
            "conversation.item.truncated",
            item_id=item.id,
            content_index=cut.content_index,
            audio_end_ms=cut.audio_end_ms,
        )

    def _find(self, event: dict[str, Any], code: str) -> Item:
        item_id = required(event, "item_id", str)
        found = self.get(item_id)
        if found is None:
            raise ProtocolError(
                f"Item with item_id '{item_id}' not found.", code=code, param="item_id"
            )
        return found

    def _checked_truncation(self, event: dict[str, Any]) -> Truncation:
        item = self._find(event, "item_truncate_invalid_item_id")
        content_index = required(event, "content_index", int)
        audio_end_ms = required(event, "audio_end_ms", int)
        content = item.data.get("content") or []
        if item.data.get("role") != "assistant" or not any(
            part.get("type") in _AUDIO_PARTS for part in content
        ):
            raise ProtocolError(
                "Only model output audio messages can be truncated.",
                code="unsupported_content_type",
                param="item_id",
            )
        if content_index != 0:
            raise ProtocolError(
                f"Invalid value: {content_index}. The item has one content part (index 0).",
                code="invalid_value",
                param="content_index",
            )
        if audio_end_ms < 0 or audio_end_ms > item.audio_ms:
            raise ProtocolError(
                f"Audio content of {int(item.audio_ms)}ms is already shorter than "
                f"{audio_end_ms}ms.",
                code="invalid_value",
                param="audio_end_ms",
            )
        return Truncation(item, content_index, audio_end_ms)
