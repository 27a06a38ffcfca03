"""Which profile a new call gets: ``[[routes]]`` on the dialed number, the caller's number and
the account it came in on. No I/O.

The dialed number is the Request-URI's user, unless that names the agent itself (``sip.user``
or an account's user: what a registrar's lookup puts there), in which case it is the To
user: a trunk delivering to a registered contact keeps the number dialed in To. The caller's
number is the P-Asserted-Identity a trusted source (a registrar, an allowed address) asserts,
else the From user. Both are normalised: visual separators dropped, and an international
number (``+``, or the ``00`` prefix) written in E.164.

The decision is made once, at the request gate, before the stack sees the INVITE; the call
that INVITE becomes finds it again by its SIP Call-ID (:class:`RouteBook`).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from fnmatch import fnmatchcase

from agent.config import RouteSettings
from agent.sip.message import SipRequest, uri_user

#: Characters people and carriers put between digits.
_SEPARATORS = re.compile(r"[\s.()\-/]")
_INTERNATIONAL = re.compile(r"(?:\+|00)([1-9]\d{1,14})")
#: Routing decisions kept for calls the stack has not yet reported: bounded, so INVITEs that
#: never become calls (refused by the stack, a flood) cannot grow it.
_BOOK_SIZE = 512


def normalise_number(user: str) -> str:
    """``user`` as E.164 when it is an international phone number, else as written (minus
    separators when what is left is digits)."""
    text = user.strip()
    if text.lower().startswith("tel:"):
        text = text[4:].split(";", 1)[0]
    compact = _SEPARATORS.sub("", text)
    match = _INTERNATIONAL.fullmatch(compact)
    if match:
        return "+" + match.group(1)
    return compact if compact.isdigit() else text


@dataclass(frozen=True)
class CallRoute:
    """What routing found for one new call."""

    #: The ``[profiles]`` name; "" is the base profile (no routes configured).
    profile: str
    dialed: str
    caller: str
    #: The account or peer the call came in on ("" when it came from an allowed address).
    account: str
    #: The route demands SDES-SRTP.
    srtp_required: bool = False


class Router:
    """First matching route, else ``default_profile``, else no route (404)."""

    def __init__(
        self,
        routes: tuple[RouteSettings, ...],
        default_profile: str,
        own_users: tuple[str, ...],
    ) -> None:
        self.routes = routes
        self.default_profile = default_profile
        #: User parts that mean "us" in a Request-URI.
        self.own_users = frozenset(own_users)

    def dialed(self, request: SipRequest) -> str:
        user = request.uri_user
        if user in self.own_users or not user:
            user = uri_user(request.header("to") or "") or user
        return normalise_number(user)

    @staticmethod
    def caller(request: SipRequest, trusted: bool) -> str:
        asserted = request.header("p-asserted-identity") if trusted else None
        user = uri_user(asserted or "") or uri_user(request.header("from") or "")
        return normalise_number(user)

    def route(self, request: SipRequest, account: str, trusted: bool) -> CallRoute | None:
        """The route of a new INVITE, or None (answer 404)."""
        dialed = self.dialed(request)
        caller = self.caller(request, trusted)
        if not self.routes and not self.default_profile:
            # No routing configured: the agent answers as its own user parts only.
            if request.uri_user in self.own_users:
                return CallRoute("", dialed, caller, account)
            return None
        for route in self.routes:
            if (
                (not route.dialed or fnmatchcase(dialed, route.dialed))
                and (not route.caller or fnmatchcase(caller, route.caller))
                and (not route.account or route.account == account)
            ):
                return CallRoute(route.profile, dialed, caller, account, route.srtp == "mandatory")
        if self.default_profile:
            return CallRoute(self.default_profile, dialed, caller, account)
        return None


class RouteBook:
    """Routing decisions by SIP Call-ID, from the request gate to the call it admitted.

    The gate may run on the stack's thread (baresip) and the call on the loop: a lock keeps
    the two apart."""

    def __init__(self, size: int = _BOOK_SIZE) -> None:
        self._size = size
        self._routes: OrderedDict[str, CallRoute] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, sip_call_id: str, route: CallRoute) -> None:
        with self._lock:
            self._routes[sip_call_id] = route
            self._routes.move_to_end(sip_call_id)
            while len(self._routes) > self._size:
                self._routes.popitem(last=False)

    def take(self, sip_call_id: str) -> CallRoute | None:
        with self._lock:
            return self._routes.pop(sip_call_id, None)
