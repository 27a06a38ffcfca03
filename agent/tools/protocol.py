"""Function calling over the realtime protocol, without I/O.

Fed with the model's function-call events, it reports the calls the model completed; given
tool outputs and notes for the model, it returns the requests to send, and decides when to
ask for a response (``CreateResponse``). Whether a response is in progress is the bridge's
one notion of it, passed in.

A response may be asked for only while none is active (the server refuses a second one), and
one response answers every output that reached the conversation before the response began. So
outputs sent while a response runs are collected and answered by one ``CreateResponse`` when
it is done, unless a response that began after they were added (e.g. server VAD answering the
caller) already covers them. "Added" is the server's acknowledgement of our item
(``ItemAdded``); a response we asked for covers everything sent before we asked, acknowledged
or not. Our requests carry a tag, echoed in ``ResponseCreated``, to tell them from the
server's own responses.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.bridge.events import FunctionCallDone
from agent.bridge.requests import (
    ClientRequest,
    CreateItem,
    CreateResponse,
    FunctionOutput,
    McpApproval,
    Message,
)

#: An item is asked about at most this often (a server that never acknowledges items nor
#: echoes tags must not get endless response requests).
_MAX_REQUESTS = 2


@dataclass(frozen=True)
class FunctionCall:
    """One completed function call of the model; ``arguments`` is the raw JSON text."""

    call_id: str
    name: str
    arguments: str
    item_id: str
    response_id: str


class ToolProtocol:
    """One session's function-call bookkeeping."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}  # function call item id -> tool name (beta needs it)
        self._started: set[str] = set()
        self._next_key = 0
        self._unanswered: set[str] = set()  # our items no response has covered yet
        self._acked: set[str] = set()  # ... of which the server confirmed the addition
        self._requested: set[str] | None = None  # covered by the CreateResponse in flight
        self._request_tag = ""
        self._requests = 0
        self._asked: dict[str, int] = {}  # item -> response requests made for it

    # -- the model's side --------------------------------------------------------------------
    def function_started(self, item_id: str, name: str) -> None:
        self._names[item_id] = name

    def function_done(self, event: FunctionCallDone) -> FunctionCall | None:
        """The call to run, once per call id (None for a repeat or a call without an id)."""
        if not event.call_id or event.call_id in self._started:
            return None
        self._started.add(event.call_id)
        return FunctionCall(
            call_id=event.call_id,
            name=event.name or self._names.pop(event.item_id, ""),
            arguments=event.arguments,
            item_id=event.item_id,
            response_id=event.response_id,
        )

    def item_added(self, item_id: str) -> None:
        if item_id in self._unanswered:
            self._acked.add(item_id)

    def response_created(self, tag: str | None) -> None:
        covered = set(self._acked)
        if self._requested is not None and tag == self._request_tag:
            covered |= self._requested
            self._requested = None
        self._settle(covered)

    def response_done(self) -> list[ClientRequest]:
        """No response is active now: ask again for what is still unanswered."""
        # A request still pending now was refused, or answered by a server that does not
        # echo tags: either way, ask again (bounded by _MAX_REQUESTS).
        self._requested = None
        return self._maybe_request(response_active=False)

    def busy(self) -> None:
        """Our CreateResponse lost a race with one the server started: ask again when it is
        done, unless it turns out to cover our items."""
        self._requested = None

    # -- our side ----------------------------------------------------------------------------
    def output(
        self, call_id: str, output: str, *, respond: bool, response_active: bool
    ) -> list[ClientRequest]:
        """A tool's output for the model (and a response request, when one is due now)."""
        item = FunctionOutput(self._key("out"), call_id, output)
        return self._add(item, respond, response_active)

    def note(
        self, text: str, *, role: str = "user", respond: bool = True, response_active: bool
    ) -> list[ClientRequest]:
        """A text message in the conversation, e.g. the keys the caller pressed."""
        return self._add(Message(self._key("msg"), role, text), respond, response_active)

    def approval(
        self, request_id: str, approve: bool, reason: str, *, response_active: bool
    ) -> list[ClientRequest]:
        """Our answer to a server-side MCP tool's approval request; the model goes on with a
        response, as after a function's output."""
        item = McpApproval(self._key("mcp"), request_id, approve, reason)
        return self._add(item, True, response_active)

    @property
    def waiting_for_response(self) -> bool:
        """Some output or note has not been answered by a response yet."""
        return bool(self._unanswered)

    def _key(self, kind: str) -> str:
        # Our own item ids (the API accepts client-chosen ids up to 32 characters), so the
        # server's acknowledgement can be matched to what we sent.
        self._next_key += 1
        return f"tool_{kind}_{self._next_key:06d}"

    def _add(
        self, item: FunctionOutput | Message | McpApproval, respond: bool, response_active: bool
    ) -> list[ClientRequest]:
        requests: list[ClientRequest] = [CreateItem(item)]
        if respond:
            self._unanswered.add(item.item_id)
            requests.extend(self._maybe_request(response_active))
        return requests

    def _maybe_request(self, response_active: bool) -> list[ClientRequest]:
        if not self._unanswered or response_active or self._requested is not None:
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
        return [CreateResponse(tag=self._request_tag)]

    def _settle(self, covered: set[str]) -> None:
        self._unanswered -= covered
        self._acked -= covered
        for key in covered:
            self._asked.pop(key, None)
