"""The request policy's gatekeeper: who may call (``agent.sip.callers``), then which profile
answers the number (``agent.sip.routing``). No I/O.

Runs inside every engine's request gate (on the stack's thread for baresip), so its
decisions are the same whatever the engine. A new INVITE that passes both leaves its route in
the :class:`~agent.sip.routing.RouteBook` under its Call-ID, where the call finds it.
"""

from __future__ import annotations

from agent.config import Settings
from agent.sip.callers import CallerScreen, RegistrarSources
from agent.sip.digest import Credentials, DigestAuth
from agent.sip.message import SipRequest, sdp_offers_srtp
from agent.sip.request_policy import Answer
from agent.sip.routing import CallRoute, RouteBook, Router

#: The realm of our digest challenges.
REALM = "voice-agent"


class CallGatekeeper:
    """``agent.sip.request_policy.Gatekeeper`` for one agent's settings."""

    def __init__(self, settings: Settings, registrars: RegistrarSources) -> None:
        sip = settings.sip
        passwords = settings.secrets.sip_passwords
        peers = tuple(
            Credentials(peer.name, peer.username, passwords[peer.password_env])
            for peer in sip.peers
        )
        self.callers = CallerScreen(
            sip.allow_from, registrars, DigestAuth(REALM, peers) if peers else None
        )
        own = (sip.user, *(account.username for account in sip.accounts))
        self.router = Router(settings.routes, settings.default_profile, own)
        self.routes = RouteBook()
        #: Where SRTP is mandatory: the process (sip.srtp) and each account's own setting.
        self._srtp = sip.srtp
        self._account_srtp = {account.name: account.srtp for account in sip.accounts}
        #: What ``screen`` found about the last new INVITE, for ``route`` right after it.
        self._pending: tuple[str, str, bool] = ("", "", False)

    def only_this_machine(self, settings: Settings) -> bool:
        """Whether nobody but this machine may call: no accounts, no peers, and allowed
        addresses all loopback (the default)."""
        sip = settings.sip
        return (
            not sip.accounts
            and not sip.peers
            and all(network.is_loopback for network in self.callers.networks)
        )

    def screen(self, request: SipRequest) -> Answer | None:
        verdict = self.callers.screen(request)
        if request.method == "INVITE":
            self._pending = (request.header("call-id") or "", verdict.account, verdict.trusted)
        return verdict.answer

    def route(self, request: SipRequest) -> Answer | None:
        call_id = request.header("call-id") or ""
        pending_id, account, trusted = self._pending
        if pending_id != call_id:
            account, trusted = "", False
        found = self.router.route(request, account, trusted)
        if found is None:
            if not (self.router.routes or self.router.default_profile):
                # No routing configured: only the agent's own user parts are answered.
                return Answer(
                    404,
                    "Not Found",
                    why=f"no such user {request.uri_user!r}",
                    kind="unknown_user",
                )
            return Answer(
                404,
                "Not Found",
                why=f"no route for {self.router.dialed(request)!r}",
                kind="no_route",
            )
        if (
            self._srtp_required(found)
            and request.body.strip()
            and not sdp_offers_srtp(request.body)
        ):
            # Answered here, the same on every engine, before the stack spends anything.
            return Answer(
                488,
                "Not Acceptable Here",
                (("Warning", '399 voice-agent "SRTP required"'),),
                "plain RTP offered where SRTP is mandatory",
                kind="srtp_required",
            )
        self.routes.put(call_id, found)
        return None

    def _srtp_required(self, route: CallRoute) -> bool:
        policy = self._account_srtp.get(route.account, "") or self._srtp
        return route.srtp_required or policy == "mandatory"
