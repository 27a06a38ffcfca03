"""Which SIP requests the agent serves, and the answer to every other one. No I/O.

Every SIP engine puts this in front of its stack, so a stranger's packet gets the same answer
whatever the engine: a request the agent does not do is refused with the right code (405 with
an ``Allow`` that lists only what it does, 501 for unknown methods, 481 for dialog requests
that match no dialog) instead of being half-served (presence NOTIFYs sent to any Contact,
``200`` to MESSAGE) or left without an answer; an INVITE to another user part gets 404; an
INVITE beyond capacity or while draining gets 503 with ``Retry-After`` before the stack spends
a call slot on it; a REFER from the far end never makes the agent dial (toll fraud).

Contract: ``decide(request)`` is called once per request that no transaction of the stack has
claimed (new requests, in and out of dialogs, never retransmissions it already answers), on
the SIP thread, and returns ``None`` (let the stack handle it) or the :class:`Answer` to send.
ACK and CANCEL always go to the stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.sip.message import SipRequest

#: What the agent itself accepts: calls and their in-dialog requests, DTMF by INFO, the
#: NOTIFYs that report a transfer it started, session refresh and reliable provisionals.
ALLOW = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "NOTIFY", "UPDATE", "PRACK")
ALLOW_HEADER = ", ".join(ALLOW)
#: Methods a SIP stack knows but the agent does not serve.
NOT_SERVED = ("REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "REFER")
#: Requests that only make sense inside an existing dialog.
DIALOG_ONLY = ("BYE", "INFO", "NOTIFY", "PRACK", "UPDATE")
#: Body types an in-dialog INFO may carry (RFC 6086 needs 415 for the others).
INFO_TYPES = ("application/dtmf-relay",)


@dataclass(frozen=True)
class Answer:
    """A final response to send to the request instead of letting the stack serve it."""

    code: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    #: Why, in words, for the (rate-limited) log line.
    why: str = ""
    #: Why, as a fixed name for metrics (``at_capacity``, ``unknown_user``, ...): ``why`` may
    #: quote what the request said, which must never become a label value.
    kind: str = ""


#: Admission: None while the agent takes calls, else the answer for a new INVITE (503).
Admission = Callable[[], Answer | None]
#: Told of every new INVITE the policy refuses (for metrics), with the answer it gets.
CallRefused = Callable[[Answer], None]

#: Code 0: no answer at all, the request is dropped (floods, strangers' probes).
DROP = Answer(0, "", why="rate limit for sources not allowed", kind="dropped")


class Gatekeeper(Protocol):
    """Who may call, and which number is answered (``agent.sip.gatekeeper``)."""

    def screen(self, request: SipRequest) -> Answer | None:
        """A request outside a dialog: None when its source may send it."""
        ...

    def route(self, request: SipRequest) -> Answer | None:
        """A new INVITE that passed ``screen``: None when a route takes it (404 otherwise)."""
        ...


def unavailable(retry_after_s: int, why: str, kind: str = "unavailable") -> Answer:
    """503 with ``Retry-After``: capacity, draining, backend down."""
    return Answer(503, "Service Unavailable", (("Retry-After", str(retry_after_s)),), why, kind)


class RequestPolicy:
    """The agent's answers to requests, for the one user part it answers as."""

    def __init__(
        self,
        user: str,
        admission: Admission,
        on_call_refused: CallRefused | None = None,
        gatekeeper: Gatekeeper | None = None,
    ) -> None:
        self.user = user
        self.admission = admission
        self.on_call_refused = on_call_refused
        #: Without one, every source may call the one user part ``user``.
        self.gatekeeper = gatekeeper

    def decide(self, request: SipRequest) -> Answer | None:
        method = request.method
        if method in ("ACK", "CANCEL"):
            return None
        if request.in_dialog:
            return self._in_dialog(request)
        refusal: Answer | None = None
        if self.gatekeeper is not None:
            refusal = self.gatekeeper.screen(request)
            if refusal is not None and method != "INVITE":
                return refusal
        if method == "INVITE":
            if refusal is None:
                refusal = self._new_call(request)
            # A digest challenge is the first step of a peer's call, not a refusal.
            if refusal is not None and refusal.code != 401 and self.on_call_refused is not None:
                self.on_call_refused(refusal)
            return refusal
        if method == "OPTIONS":
            return self.admission() or Answer(
                200,
                "OK",
                (("Allow", ALLOW_HEADER), ("Accept", "application/sdp")),
                "options",
            )
        if method in DIALOG_ONLY:
            return Answer(481, "Call/Transaction Does Not Exist", why=f"{method} outside a dialog")
        return self._not_served(method)

    def _new_call(self, request: SipRequest) -> Answer | None:
        if request.header("replaces") is not None:
            # Replaces lets whoever knows a call's dialog ids take that call over.
            return Answer(403, "Forbidden", why="INVITE with Replaces", kind="replaces")
        if self.gatekeeper is not None:
            unrouted = self.gatekeeper.route(request)
            if unrouted is not None:
                return unrouted
        elif request.uri_user != self.user:
            return Answer(
                404, "Not Found", why=f"no such user {request.uri_user!r}", kind="unknown_user"
            )
        return self.admission()

    def _in_dialog(self, request: SipRequest) -> Answer | None:
        method = request.method
        if method == "INFO" and request.content_type not in ("", *INFO_TYPES):
            return Answer(
                415,
                "Unsupported Media Type",
                (("Accept", ", ".join(INFO_TYPES)),),
                f"INFO with {request.content_type}",
            )
        if method in ALLOW:
            return None
        # REFER from the far end would make the agent dial wherever it says.
        return self._not_served(method)

    def _not_served(self, method: str) -> Answer:
        allow = (("Allow", ALLOW_HEADER),)
        if method in NOT_SERVED:
            return Answer(405, "Method Not Allowed", allow, f"{method} is not served")
        return Answer(501, "Not Implemented", allow, f"unknown method {method}")
