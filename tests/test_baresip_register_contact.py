"""The REGISTER Contact rewrite of the baresip engine (``sip.public_host``), on the datagrams
libre sends and the answers Kamailio gives (the end-to-end check is in
tests/test_registration.py)."""

from __future__ import annotations

from agent.sip.baresip.register_contact import RegisterContactRewriter

REGISTER = (
    b"REGISTER sip:127.0.0.1:5070 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKabc;rport\r\n"
    b"Contact: <sip:agent-Xy1@10.0.0.7:5060>;expires=300\r\n"
    b"To: <sip:agent@127.0.0.1>\r\nFrom: <sip:agent@127.0.0.1>;tag=1\r\n"
    b"Call-ID: reg-1\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n"
)


def ok(contacts: bytes, call_id: bytes = b"reg-1", method: bytes = b"REGISTER") -> bytes:
    return (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKabc\r\n"
        + contacts
        + b"\r\nCall-ID: "
        + call_id
        + b"\r\nCSeq: 2 "
        + method
        + b"\r\nContent-Length: 0\r\n\r\n"
    )


def test_the_register_names_the_public_host_and_keeps_everything_else() -> None:
    rewriter = RegisterContactRewriter("203.0.113.5")
    sent = rewriter.outgoing(REGISTER)
    assert sent == REGISTER.replace(b"@10.0.0.7:5060>", b"@203.0.113.5:5060>")
    # Via is the stack's own (the registrar answers to the source it saw anyway).
    assert b"Via: SIP/2.0/UDP 10.0.0.7:5060" in sent
    assert rewriter.outgoing(sent) is None  # a retransmission of the rewritten one


def test_only_registers_are_touched() -> None:
    rewriter = RegisterContactRewriter("203.0.113.5")
    invite = REGISTER.replace(b"REGISTER sip:", b"INVITE sip:").replace(b"2 REGISTER", b"2 INVITE")
    assert rewriter.outgoing(invite) is None
    assert rewriter.incoming(REGISTER) is None


def test_our_binding_in_the_answer_gets_the_local_host_back_and_no_other() -> None:
    rewriter = RegisterContactRewriter("203.0.113.5")
    assert rewriter.outgoing(REGISTER) is not None
    answer = ok(
        b"Contact: <sip:agent-Xy1@203.0.113.5:5060>;expires=3600, "
        b"<sip:phone@203.0.113.5:5060>;expires=60\r\n"
        b"m: <sip:agent-Xy1@198.51.100.1:5060>;expires=90"
    )
    received = rewriter.incoming(answer)
    assert received is not None
    assert b"<sip:agent-Xy1@10.0.0.7:5060>;expires=3600" in received
    assert b"<sip:phone@203.0.113.5:5060>" in received  # another device's binding
    assert b"<sip:agent-Xy1@198.51.100.1:5060>" in received  # another address
    assert rewriter.incoming(ok(b"Contact: <sip:agent-Xy1@203.0.113.5:5060>", b"other")) is None
    assert (
        rewriter.incoming(ok(b"Contact: <sip:agent-Xy1@203.0.113.5:5060>", method=b"INVITE"))
        is None
    )
