"""The request policy: what a stranger's request gets, whatever the SIP engine."""

from __future__ import annotations

import pytest

from agent.sip.message import parse_request, uri_user
from agent.sip.request_policy import ALLOW, Answer, RequestPolicy, unavailable

_FULL: Answer | None = None


def _request(method: str, *headers: str, uri: str = "sip:agent@127.0.0.1:5060") -> str:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK1",
        "From: <sip:probe@127.0.0.2>;tag=abc",
        "To: <sip:agent@127.0.0.1>",
        "Call-ID: probe-1",
        f"CSeq: 1 {method}",
        *headers,
        "Content-Length: 0",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def _decide(text: str, admission: Answer | None = None) -> Answer | None:
    request = parse_request(text, "127.0.0.2", 5070)
    assert request is not None
    return RequestPolicy("agent", lambda: admission).decide(request)


def test_parser_reads_compact_forms_tags_and_folded_lines() -> None:
    text = (
        "INFO sip:agent@h SIP/2.0\r\nt: <sip:agent@h;tag=nottag>;tag=T1\r\n"
        "c: application/dtmf-relay; charset=x\r\nSubject: one\r\n two\r\n\r\nSignal=1\r\n"
    )
    request = parse_request(text, "10.0.0.1", 5060)
    assert request is not None
    assert request.method == "INFO" and request.to_tag == "T1" and request.in_dialog
    assert request.content_type == "application/dtmf-relay"
    assert request.header("SUBJECT") == "one two"
    assert parse_request("garbage\r\n\r\n", "x", 1) is None
    assert parse_request("\x00\xff" * 50, "x", 1) is None


def test_uri_user() -> None:
    assert uri_user("sip:+15550001@example.com;user=phone") == "+15550001"
    assert uri_user('"Bob" <sips:bob@host:5061>;tag=1') == "bob"
    assert uri_user("tel:+15550001;phone-context=x") == "+15550001"
    assert uri_user("sip:host.example.com") == ""
    assert uri_user("mailto:a@b") == ""


@pytest.mark.parametrize("method", ["SUBSCRIBE", "MESSAGE", "PUBLISH", "REGISTER", "REFER"])
def test_methods_the_agent_does_not_serve_get_405_with_an_honest_allow(method: str) -> None:
    answer = _decide(_request(method, "Event: presence"))
    assert answer is not None and answer.code == 405
    allow = dict(answer.headers)["Allow"]
    assert method not in allow and set(allow.split(", ")) == set(ALLOW)


def test_unknown_methods_get_501_and_dialog_requests_outside_a_dialog_481() -> None:
    assert (_decide(_request("FOO")) or Answer(0, "")).code == 501
    for method in ("BYE", "NOTIFY", "PRACK", "INFO", "UPDATE"):
        assert (_decide(_request(method)) or Answer(0, "")).code == 481, method


def test_invites() -> None:
    assert _decide(_request("INVITE")) is None
    not_ours = _decide(_request("INVITE", uri="sip:1000@127.0.0.1:5060"))
    assert not_ours is not None and not_ours.code == 404
    replaces = _decide(_request("INVITE", "Replaces: abc;to-tag=1;from-tag=2"))
    assert replaces is not None and replaces.code == 403
    full = _decide(_request("INVITE"), unavailable(30, "at capacity"))
    assert full is not None and full.code == 503
    assert dict(full.headers)["Retry-After"] == "30"


def test_options_say_what_the_agent_does_and_whether_it_takes_calls() -> None:
    ok = _decide(_request("OPTIONS"))
    assert ok is not None and ok.code == 200 and dict(ok.headers)["Allow"]
    busy = _decide(_request("OPTIONS"), unavailable(9, "draining"))
    assert busy is not None and busy.code == 503


def test_in_dialog_requests() -> None:
    tag = "To: <sip:agent@127.0.0.1>;tag=ours"
    text = _request("INFO", tag, "Content-Type: application/dtmf-relay")
    assert _decide(text.replace("To: <sip:agent@127.0.0.1>\r\n", "")) is None
    info = _request("INFO", "Content-Type: application/x-foo").replace(
        "To: <sip:agent@127.0.0.1>", tag
    )
    answer = _decide(info)
    assert answer is not None and answer.code == 415
    assert dict(answer.headers)["Accept"] == "application/dtmf-relay"
    refer = _request("REFER", "Refer-To: <sip:+19005550199@trunk>").replace(
        "To: <sip:agent@127.0.0.1>", tag
    )
    refused = _decide(refer)
    assert refused is not None and refused.code == 405
    for method in ("BYE", "INVITE", "UPDATE", "NOTIFY", "ACK"):
        assert _decide(_request(method).replace("To: <sip:agent@127.0.0.1>", tag)) is None


def test_ack_and_cancel_always_reach_the_stack() -> None:
    assert _decide(_request("ACK"), unavailable(1, "x")) is None
    assert _decide(_request("CANCEL"), unavailable(1, "x")) is None


def test_sdp_audio_address() -> None:
    from agent.sip.message import sdp_audio_address

    offer = (
        "v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=video 5000 RTP/AVP 96\r\nc=IN IP4 192.0.2.9\r\n"
        "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.2\r\n"
    )
    assert sdp_audio_address(offer) == ("192.0.2.2", 4000)
    assert sdp_audio_address(offer.replace("c=IN IP4 192.0.2.2\r\n", "")) == ("192.0.2.1", 4000)
    assert sdp_audio_address("v=0\r\nm=audio 0 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n") is None
    assert sdp_audio_address("not sdp") is None
