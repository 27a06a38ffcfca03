"""The request gate in front of baresip: the request policy, and INVITEs baresip must not see.

baresip answers requests the agent does not serve (OPTIONS with its whole SDP, MESSAGE,
presence), offers no 503 before a call exists (its capacity answer is 486), tears a live call
down for any INVITE with Replaces, and in baresip-python 0.5.2a3 an INVITE that
``sipsess_accept`` rejects (a missing or unparseable Contact, no From tag) leaks a call slot
and corrupts the heap. So a libre request listener at the head of the list
(``native.RequestListener``) sees every request first and answers, itself:

- whatever :class:`~agent.sip.request_policy.RequestPolicy` refuses (the same answers as on
  every engine: 405/501/481/415/404/403, 503 + Retry-After at capacity or while draining);
- new INVITEs baresip would choke on: 416 for a non-SIP Request-URI, 400 for a missing From
  tag, a malformed From/To/Contact or Call-ID (strict patterns, and the Contact decoded by
  libre's own parser).

It also chooses each call's codec before baresip reads the offer: the first codec of
``sip.codecs`` the caller offers (baresip itself would take the offerer's first), set on the
account of the user agent baresip is about to hand the INVITE to (the process's own, or a
``[[sip.accounts]]`` one). And it shows the policy the account's user name where baresip's
Contact user stands (``agent-<random>`` when two user agents share a user): the registrar
puts that in the Request-URI of the calls it delivers, and routing must see the user it
registered. It also sets the Contact
baresip answers each new INVITE with (``contact_uri``): ``sip.public_host`` behind NAT, and
``sips:`` for a ``sips:`` call over TLS (baresip itself always says ``sip:`` and the address
the request came to). And for an
INVITE without an offer, whose ACK then brings no answer either (what scanners send),
baresip would drop the dialog without a word: the gate tells the call (acknowledged without
media, as on every engine) and ends it so that libre's own handling of that ACK sends a BYE.

Everything here runs on the re thread, inside libre's receive path; what the loop needs to
know (refusals to log, INFO digits, REFER progress) is handed over with
``call_soon_threadsafe``, in the order it happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog

from agent.observe.ratelimit import KeyedRateLimit
from agent.sip.baresip import native
from agent.sip.message import SipRequest, codecs_for_offer, parse_request
from agent.sip.request_policy import Answer, RequestPolicy

log = structlog.get_logger("sip")

#: A name-addr or addr-spec of printable ASCII with a sip/sips URI: what baresip can take.
_ADDRESS = re.compile(
    r'^\s*(?:"[ -~]*"\s*|[!-~ ]*)?<sips?:[!-=?-~]+>(?:;[!-~]*)?\s*$'
    r"|^\s*sips?:[!-:<-~]+(?:;[!-~]*)?\s*$"
)
_FROM_TAG = re.compile(r";\s*tag\s*=\s*[^;,\s>]+", re.I)

_LATE_OFFERS_KEPT = 256
#: sip.codecs name -> baresip's codec name.
STACK_CODECS = {"PCMU": "pcmu", "PCMA": "pcma", "G722": "g722/16000/1"}


def _with_user(uri: str, user: str) -> str:
    """``uri`` (sip:user@host...) with another user part."""
    scheme, _, rest = uri.partition(":")
    return f"{scheme}:{user}@{rest.split('@', 1)[1]}"


def contact_uri(request_uri: str, user: str, arrival: native.Arrival, public_host: str) -> str:
    """The Contact URI our answer to a new INVITE carries: ``sips:`` for a ``sips:``
    Request-URI that came over TLS (RFC 5630: the caller requires it), at ``public_host``
    when one is set (behind NAT: where callers reach us), else the address it came to; the
    transport named unless it is UDP (or implied by ``sips:``)."""
    sips = request_uri[:5].lower() == "sips:" and arrival.transport == "tls"
    host, port = arrival.address
    host = public_host or host
    if ":" in host:
        host = f"[{host}]"
    suffix = "" if arrival.transport == "udp" or sips else f";transport={arrival.transport}"
    return f"{'sips' if sips else 'sip'}:{user}@{host}:{port}{suffix}"


def invite_defect(request: SipRequest) -> Answer | None:
    """Why baresip must not see this new INVITE (the answer to send instead), or None."""
    scheme = request.uri.split(":", 1)[0].lower()
    if scheme not in ("sip", "sips"):
        return Answer(416, "Unsupported URI Scheme", why=f"Request-URI scheme {scheme!r}")
    sender = request.header("from") or ""
    call_id = request.header("call-id") or ""
    if not call_id or not call_id.isprintable():
        return Answer(400, "Bad Request", why="missing or unprintable Call-ID")
    if not _FROM_TAG.search(sender.split(">", 1)[-1]):
        return Answer(400, "Bad Request", why="From without a tag")
    for name, value in (("From", sender), ("To", request.header("to") or "")):
        if not _ADDRESS.match(value):
            return Answer(400, "Bad Request", why=f"malformed {name}")
    contact = request.header("contact") or ""
    if not _ADDRESS.match(contact) or not native.contact_parses(contact):
        return Answer(400, "Bad Request", why="missing or malformed Contact")
    return None


class BaresipRequestGate:
    """Answers what the policy refuses, before baresip; see the module docstring."""

    def __init__(
        self,
        policy: RequestPolicy,
        codecs: tuple[str, ...],
        loop: asyncio.AbstractEventLoop,
        on_answer: Callable[[SipRequest, Answer], None],
        on_in_dialog: Callable[[SipRequest, str], None],
        public_host: str = "",
    ) -> None:
        self.policy = policy
        self._public_host = public_host
        self._codecs = codecs
        self._loop = loop
        self._on_answer = on_answer
        self._on_in_dialog = on_in_dialog
        #: Codecs last set, by account (``struct account *`` address).
        self._chosen: dict[int, tuple[str, ...]] = {}
        #: baresip Contact user -> the account user name it stands for (set by the engine
        #: once its user agents exist; replaced whole, read on the re thread).
        self.contact_users: dict[str, str] = {}
        self._errors = KeyedRateLimit(interval_s=60.0)
        #: Call-IDs of admitted INVITEs without SDP (the answer comes with the ACK), oldest
        #: first and bounded: a flood of them that never ACKs cannot grow it.
        self._late_offers: OrderedDict[str, None] = OrderedDict()
        self.listener = native.RequestListener(self._handle, self._failed)

    def install(self) -> None:
        """*re thread*: in front of baresip's listeners."""
        self.listener.install()

    def uninstall(self) -> None:
        """*re thread*."""
        self.listener.uninstall()

    def _handle(self, msg: Any) -> bool:
        raw = native.read_request(msg)
        if raw is None:
            # Never guess at memory: a request we cannot read is dropped, not let through to
            # the stack it was meant to be checked for (the caller retransmits, or gives up).
            self._post(self._report, "sip_gate_unreadable", "struct sip_msg layout not recognised")
            return True
        request = parse_request(raw.text, *raw.source)
        if request is None:
            self._respond(msg, None, Answer(400, "Bad Request", why="unparseable request"))
            return True
        user = self.contact_users.get(request.uri_user)
        if user is not None:
            request = dataclasses.replace(request, uri=_with_user(request.uri, user))
        method = request.method
        body = raw.text.partition("\r\n\r\n")[2]
        if method == "ACK":
            self._acknowledged(request, body)
            return False
        if method == "CANCEL":
            return False
        answer = self.policy.decide(request)
        if answer is None and method == "INVITE" and not request.in_dialog:
            answer = invite_defect(request)
            if answer is None:
                self._choose_codecs(msg, body)
                self._set_contact(msg, request)
                if not body.strip():
                    self._late_offers[request.header("call-id") or ""] = None
                    while len(self._late_offers) > _LATE_OFFERS_KEPT:
                        self._late_offers.popitem(last=False)
        if answer is not None:
            self._respond(msg, request, answer)
            return True
        if request.in_dialog and method in ("INFO", "NOTIFY"):
            self._post(self._on_in_dialog, request, body)
        return False

    def _acknowledged(self, request: SipRequest, body: str) -> None:
        call_id = request.header("call-id") or ""
        if call_id not in self._late_offers:
            return
        del self._late_offers[call_id]
        if not body.strip():
            # Told first, then ended: the call is seen acknowledged without media.
            self._post(self._on_in_dialog, request, body)
            native.end_unanswered(call_id)

    def offer_all_codecs(self, account: Any) -> None:
        """*re thread*: the next call ``account`` places offers every ``sip.codecs`` codec,
        in order (an INVITE it took since may have narrowed its list to one)."""
        key = native.address_of(account)
        if account != native.NULL and self._chosen.get(key) != self._codecs:
            native.set_account_codecs(account, ",".join(STACK_CODECS[c] for c in self._codecs))
            self._chosen[key] = self._codecs

    def _choose_codecs(self, msg: Any, offer_sdp: str) -> None:
        account = native.account_for(msg)
        if account == native.NULL:
            return  # baresip answers 404 itself
        chosen = codecs_for_offer(offer_sdp, self._codecs)
        key = native.address_of(account)
        if chosen != self._chosen.get(key):
            # baresip builds the new call's media from the account's codecs right after
            # this listener returns, on this same thread: the choice holds for this INVITE.
            native.set_account_codecs(account, ",".join(STACK_CODECS[c] for c in chosen))
            self._chosen[key] = chosen

    def _set_contact(self, msg: Any, request: SipRequest) -> None:
        """The Contact of the call baresip is about to accept (see ``contact_uri``).

        Set for every new INVITE, since one user agent answers over UDP, TCP and TLS:
        each call gets the Contact of the way its INVITE came."""
        local = native.arrival(msg)
        user = native.contact_user(msg)
        if local is None or user is None:
            return  # baresip answers 404 itself, or a transport we leave to baresip
        native.set_contact(msg, contact_uri(request.uri, user, local, self._public_host))

    def _respond(self, msg: Any, request: SipRequest | None, answer: Answer) -> None:
        if answer.code:  # code 0: dropped unanswered
            native.reply(msg, answer.code, answer.reason, answer.headers)
        if request is not None:
            self._post(self._on_answer, request, answer)

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        # A closing loop has nobody left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    def _failed(self, exc: BaseException) -> None:
        self._post(self._report, "sip_gate_failed", repr(exc)[:200])

    def _report(self, event: str, error: str) -> None:
        if self._errors.allow(event):
            log.error(event, error=error)
