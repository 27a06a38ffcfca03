"""Function calling over the realtime protocol, without I/O.

Fed with server events, it reports the function calls the model completed; given tool
outputs and notes for the model, it returns the client events to send, and decides when to
ask for a response (``response.create``).

A response may be asked for only while none is active (the server refuses a second one), and
one response answers every output that reached the conversation before the response began. So
outputs sent while a response runs are collected and answered by one ``response.create`` when
it is done, unless a response that began after they were added (e.g. server VAD answering the
caller) already covers them. "Added" is the server's acknowledgement of our item
(``conversation.item.added`` in GA, ``conversation.item.created`` in beta); a response we
asked for covers everything sent before we asked, acknowledged or not. Our requests carry a
metadata tag, echoed in ``response.created``, to tell them from the server's own responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.realtime.dialect import Dialect

_ITEM_ACK = ("conversation.item.added", "conversation.item.created")
_BUSY = "conversation_already_has_active_response"
_TAG = "voice_agent_request"
#: An item is asked about at most this often (a server that never acknowledges items nor
#: echoes metadata must not get endless response requests).
_MAX_REQUESTS = 2


@dataclass(frozen=True)
class FunctionCall:
    """One completed function call of the model; ``arguments`` is the raw JSON text."""

    call_id: str
    name: str
    arguments: str
    item_id: str
    response_id: str


@dataclass
class Step:
    """What a server event led to: calls to start and client events to send, in order."""

    calls: list[FunctionCall] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


class ToolProtocol:
    """One session's function-call bookkeeping."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.active_response: str | None = None
        self._names: dict[str, str] = {}  # function call item id -> tool name (beta needs it)
        self._started: set[str] = set()
        self._next_key = 0
        self._unanswered: set[str] = set()  # our items no response has covered yet
        self._acked: set[str] = set()  # ... of which the server confirmed the addition
        self._requested: set[str] | None = None  # covered by the response.create in flight
        self._request_tag = ""
        self._requests = 0
        self._asked: dict[str, int] = {}  # item -> response requests made for it

    # -- server side -------------------------------------------------------------------------
    def server_event(self, event: dict[str, Any]) -> Step:
        kind = event.get("type")
        step = Step()
        if kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") == "function_call" and item.get("id"):
                self._names[str(item["id"])] = str(item.get("name", ""))
        elif kind == "response.function_call_arguments.done":
            call = self._function_call(event)
            if call is not None:
                step.calls.append(call)
        elif kind in _ITEM_ACK:
            key = str((event.get("item") or {}).get("id", ""))
            if key in self._unanswered:
                self._acked.add(key)
        elif kind == "response.created":
            response = event.get("response") or {}
            self.active_response = str(response.get("id", ""))
            covered = set(self._acked)
            tag = (response.get("metadata") or {}).get(_TAG)
            if self._requested is not None and tag == self._request_tag:
                covered |= self._requested
                self._requested = None
            self._settle(covered)
        elif kind == "response.done":
            done = str((event.get("response") or {}).get("id", ""))
            if self.active_response in (done, ""):
                self.active_response = None
            # A request still pending now was refused, or answered by a server that does not
            # echo metadata: either way, ask again (bounded by _MAX_REQUESTS).
            self._requested = None
            step.events.extend(self._maybe_request())
        elif kind == "error" and (event.get("error") or {}).get("code") == _BUSY:
            # Our response.create lost a race with one the server started: ask again when it
            # is done, unless it turns out to cover our items.
            self._requested = None
        return step

    def _function_call(self, event: dict[str, Any]) -> FunctionCall | None:
        call_id = str(event.get("call_id", ""))
        if not call_id or call_id in self._started:
            return None
        self._started.add(call_id)
        item_id = str(event.get("item_id", ""))
        name = str(event.get("name") or self._names.pop(item_id, ""))
        return FunctionCall(
            call_id=call_id,
            name=name,
            arguments=str(event.get("arguments", "")),
            item_id=item_id,
            response_id=str(event.get("response_id", "")),
        )

    # -- client side -------------------------------------------------------------------------
    def output(self, call_id: str, output: str, *, respond: bool = True) -> list[dict[str, Any]]:
        """A tool's output for the model (and a response request, when one is due now)."""
        key = self._key("out")
        item = {"id": key, "type": "function_call_output", "call_id": call_id, "output": output}
        return self._add(item, respond)

    def note(self, text: str, *, role: str = "user", respond: bool = True) -> list[dict[str, Any]]:
        """A text message in the conversation, e.g. the keys the caller pressed."""
        key = self._key("msg")
        item = {
            "id": key,
            "type": "message",
            "role": role,
            "content": [{"type": "input_text", "text": text}],
        }
        return self._add(item, respond)

    def _key(self, kind: str) -> str:
        # Our own item ids (the API accepts client-chosen ids up to 32 characters), so the
        # server's acknowledgement can be matched to what we sent.
        self._next_key += 1
        return f"tool_{kind}_{self._next_key:06d}"

    def _add(self, item: dict[str, Any], respond: bool) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [{"type": "conversation.item.create", "item": item}]
        if respond:
            self._unanswered.add(item["id"])
            events.extend(self._maybe_request())
        return events

    def _maybe_request(self) -> list[dict[str, Any]]:
        if not self._unanswered or self.active_response is not None:
            return []
        if self._requested is not None:
            return []
        for key in list(self._unanswered):
            self._asked[key] = self._asked.get(key, 0) + 1
            if self._asked[key] > _MAX_REQUESTS:
                self._settle({key})
        if not self._unanswered:
            return []
        self._requested = set(self._unanswered)
        self._requests += 1
        self._request_tag = f"r{self._requests}"
        return [{"type": "response.create", "response": {"metadata": {_TAG: self._request_tag}}}]

    def _settle(self, covered: set[str]) -> None:
        self._unanswered -= covered
        self._acked -= covered
        for key in covered:
            self._asked.pop(key, None)

    @property
    def waiting_for_response(self) -> bool:
        """Some output or note has not been answered by a response yet."""
        return bool(self._unanswered)
