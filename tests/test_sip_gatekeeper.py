"""Who may call and which profile answers: the gatekeeper in front of every engine (no I/O)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.config import Settings, load_settings
from agent.sip.callers import STRANGER_BURST, RegistrarSources, SourceRate
from agent.sip.digest import Credentials, DigestAuth, parse_authorization
from agent.sip.gatekeeper import REALM, CallGatekeeper
from agent.sip.message import parse_request
from agent.sip.request_policy import RequestPolicy
from agent.sip.routing import normalise_number

_CONFIG = """
[sip]
allow_from = ["10.1.0.0/16"]

[[sip.accounts]]
name = "trunk"
registrar = "sip:192.0.2.10"
username = "agent"
password_env = "TRUNK_PASSWORD"

[[sip.peers]]
name = "pbx"
username = "pbx"
password_env = "PBX_PASSWORD"

[[routes]]
dialed = "+1555000[1-3]"
profile = "sales"

[[routes]]
caller = "+44*"
profile = "uk"

[[routes]]
account = "pbx"
profile = "support"

[profiles.sales]
greeting = "Sales for {dialed}."
[profiles.uk]
[profiles.support]
instructions = "Support."
[profiles.support.tools]
builtin = ["end_call", "send_dtmf"]
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    path = tmp_path / "agent.toml"
    path.write_text(_CONFIG)
    return load_settings(path, environ={"TRUNK_PASSWORD": "t", "PBX_PASSWORD": "pbx-secret"})


def _invite(
    uri: str = "sip:+15550001@agent.example",
    to: str = "<sip:+15550001@agent.example>",
    sender: str = "<sip:+14155550100@carrier.example>;tag=1",
    *extra: str,
    method: str = "INVITE",
    call_id: str = "c1",
) -> str:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 10.1.2.3;branch=z9hG4bK1",
        f"From: {sender}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        *extra,
        "Content-Length: 0",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def _decide(keeper: CallGatekeeper, text: str, source: str = "10.1.2.3") -> int | None:
    request = parse_request(text, source, 5060)
    assert request is not None
    answer = RequestPolicy("agent", lambda: None, gatekeeper=keeper).decide(request)
    return None if answer is None else answer.code


@pytest.mark.parametrize(
    ("written", "e164"),
    [
        ("+1 (555) 000-1", "+15550001"),
        ("0015550001", "+15550001"),
        ("tel:+44-20-7946-0000;phone-context=x", "+442079460000"),
        ("5550001", "5550001"),
        ("agent", "agent"),
    ],
)
def test_numbers_are_normalised_to_e164(written: str, e164: str) -> None:
    assert normalise_number(written) == e164


def test_two_dialed_numbers_reach_their_profiles_and_others_get_404(settings: Settings) -> None:
    keeper = CallGatekeeper(settings, RegistrarSources())
    assert _decide(keeper, _invite()) is None
    route = keeper.routes.take("c1")
    assert route is not None and route.profile == "sales" and route.dialed == "+15550001"
    assert route.caller == "+14155550100"
    assert settings.profiles["sales"].agent.greeting == "Sales for {dialed}."
    # A number no route takes, and no default_profile: 404, nothing booked.
    assert _decide(keeper, _invite("sip:+15559999@a", "<sip:+15559999@a>", call_id="c2")) == 404
    assert keeper.routes.take("c2") is None


def test_the_to_user_is_the_dialed_number_when_the_request_uri_names_us(
    settings: Settings,
) -> None:
    registrars = RegistrarSources()
    registrars.update("trunk", {"192.0.2.10"})
    keeper = CallGatekeeper(settings, registrars)
    # A registrar delivering to our contact keeps the dialed number in To.
    text = _invite("sip:agent@10.9.9.9:5060", "<sip:00 1 555 0002@trunk>")
    assert _decide(keeper, text, source="192.0.2.10") is None
    route = keeper.routes.take("c1")
    assert route is not None
    assert (route.profile, route.dialed, route.account) == ("sales", "+15550002", "trunk")


def test_caller_and_account_routes(settings: Settings) -> None:
    keeper = CallGatekeeper(settings, RegistrarSources())
    asserted = "P-Asserted-Identity: <sip:+442079460000@carrier>"
    assert (
        _decide(keeper, _invite("sip:+19@a", "<sip:+19@a>", "<sip:anon@x>;tag=1", asserted)) is None
    )
    route = keeper.routes.take("c1")
    assert route is not None and (route.profile, route.caller) == ("uk", "+442079460000")


def test_p_asserted_identity_from_an_untrusted_peer_is_ignored(settings: Settings) -> None:
    keeper = CallGatekeeper(settings, RegistrarSources())
    auth = DigestAuth(REALM, (Credentials("pbx", "pbx", "pbx-secret"),))
    keeper.callers.digest = auth
    text = _invite("sip:+19@a", "<sip:+19@a>", "<sip:+15551234@pbx>;tag=1")
    challenged = parse_request(text, "198.51.100.7", 5060)
    assert challenged is not None
    answer = RequestPolicy("agent", lambda: None, gatekeeper=keeper).decide(challenged)
    assert answer is not None and answer.code == 401
    offered = [value for name, value in answer.headers if name == "WWW-Authenticate"]
    assert ["algorithm=SHA-256" in v for v in offered] == [False, True]  # MD5, then SHA-256
    header = offered[1]
    authorization = _answer_challenge(header, "pbx", "pbx-secret", "sip:+19@a")
    asserted = "P-Asserted-Identity: <sip:+449@x>"
    text = _invite("sip:+19@a", "<sip:+19@a>", "<sip:+15551234@pbx>;tag=1", asserted, authorization)
    assert _decide(keeper, text, source="198.51.100.7") is None
    route = keeper.routes.take("c1")
    assert route is not None
    # Authenticated as pbx: the account route, and the From number (not the asserted one).
    assert (route.profile, route.account, route.caller) == ("support", "pbx", "+15551234")
    assert settings.profiles["support"].tools.builtin == ("end_call", "send_dtmf")


def _answer_challenge(header: str, user: str, password: str, uri: str) -> str:
    params = parse_authorization(header)
    assert params is not None

    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    ha1 = h(f"{user}:{params['realm']}:{password}")
    ha2 = h(f"INVITE:{uri}")
    response = h(f"{ha1}:{params['nonce']}:00000001:cn:auth:{ha2}")
    return (
        f'Authorization: Digest username="{user}", realm="{params["realm"]}", '
        f'nonce="{params["nonce"]}", uri="{uri}", algorithm=SHA-256, qop=auth, nc=00000001, '
        f'cnonce="cn", response="{response}"'
    )


def test_strangers_get_403_or_nothing_and_floods_are_dropped(settings: Settings) -> None:
    keeper = CallGatekeeper(settings, RegistrarSources())
    keeper.callers.digest = None  # no peers: a stranger's INVITE is simply forbidden
    assert _decide(keeper, _invite(), source="203.0.113.9") == 403
    # OPTIONS, REGISTER, MESSAGE from a stranger: no answer at all (code 0, dropped).
    for method in ("OPTIONS", "REGISTER", "MESSAGE"):
        assert _decide(keeper, _invite(method=method), source="203.0.113.9") == 0
    # Past the burst, even INVITEs are dropped unanswered; an allowed source is unaffected.
    codes = [_decide(keeper, _invite(), source="203.0.113.9") for _ in range(2 * STRANGER_BURST)]
    assert codes.count(0) >= STRANGER_BURST
    assert _decide(keeper, _invite(), source="10.1.200.1") is None


def test_a_wrong_password_and_a_stale_nonce(settings: Settings) -> None:
    now = [1000.0]
    auth = DigestAuth(REALM, (Credentials("pbx", "pbx", "right"),), clock=lambda: now[0])
    challenge = auth.challenge()[1][1]
    wrong = _answer_challenge(challenge, "pbx", "wrong", "sip:x@y").partition(": ")[2]
    right = _answer_challenge(challenge, "pbx", "right", "sip:x@y").partition(": ")[2]
    assert auth.check("INVITE", wrong) == (None, False)
    peer, stale = auth.check("INVITE", right)
    assert peer is not None and peer.name == "pbx" and not stale
    now[0] += 301
    assert auth.check("INVITE", right) == (None, True)


def test_source_rate_refills() -> None:
    now = [0.0]
    rate = SourceRate(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [rate.allow("a") for _ in range(4)] == [True, True, True, False]
    assert rate.allow("b")
    now[0] += 0.5
    assert rate.allow("a") and not rate.allow("a")


def test_an_authenticated_peer_is_not_rate_limited(settings: Settings) -> None:
    keeper = CallGatekeeper(settings, RegistrarSources())
    # The SHA-256 challenge (_answer_challenge does SHA-256).
    challenge = keeper.callers.digest.challenge()[1][1] if keeper.callers.digest else ""
    authorization = _answer_challenge(challenge, "pbx", "pbx-secret", "sip:+19@a")
    text = _invite("sip:+19@a", "<sip:+19@a>", "<sip:+15551234@pbx>;tag=1", authorization)
    codes = [_decide(keeper, text, source="198.51.100.7") for _ in range(3 * STRANGER_BURST)]
    assert codes == [None] * (3 * STRANGER_BURST)


_PLAIN = "v=0\r\nc=IN IP4 10.1.2.3\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
_SRTP = (
    "v=0\r\nc=IN IP4 10.1.2.3\r\nm=audio 4000 RTP/SAVP 0\r\n"
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
)


def test_a_plain_offer_gets_488_where_srtp_is_mandatory(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[sip]\nsrtp = "optional"\n[[routes]]\ndialed = "+1555*"\nprofile = "p"\n'
        'srtp = "mandatory"\n[[routes]]\ndialed = "*"\nprofile = "p"\n[profiles.p]\n'
    )
    keeper = CallGatekeeper(load_settings(path, environ={}), RegistrarSources())

    def offer(number: str, sdp: str) -> int | None:
        text = _invite(f"sip:{number}@a", f"<sip:{number}@a>").replace(
            "Content-Length: 0\r\n\r\n", f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
        )
        return _decide(keeper, text, source="127.0.0.1")

    assert offer("+15550001", _PLAIN) == 488
    assert offer("+15550001", _SRTP) is None
    assert offer("+15550001", "") is None  # a late offer: the agent offers SRTP itself
    assert offer("+4420", _PLAIN) is None  # SRTP optional there
