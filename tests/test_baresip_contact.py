"""The Contact and SDP address the baresip engine answers with (sans-I/O parts)."""

from __future__ import annotations

import pytest

from agent.sip.baresip.engine import sdp_address
from agent.sip.baresip.gate import contact_uri
from agent.sip.baresip.native import Arrival
from agent.sip.engine import EngineStartError

UDP = Arrival(("127.0.0.1", 5060), "udp")
TLS = Arrival(("127.0.0.1", 5061), "tls")


def test_a_plain_call_gets_the_address_it_came_to() -> None:
    assert contact_uri("sip:agent@127.0.0.1", "agent", UDP, "") == "sip:agent@127.0.0.1:5060"


def test_the_public_host_replaces_the_local_address_and_keeps_the_port() -> None:
    uri = contact_uri("sip:+15550001@10.0.0.4", "agent", UDP, "203.0.113.7")
    assert uri == "sip:agent@203.0.113.7:5060"
    assert contact_uri("sip:a@h", "agent", UDP, "2001:db8::7") == "sip:agent@[2001:db8::7]:5060"


def test_a_sips_call_over_tls_gets_a_sips_contact() -> None:
    assert contact_uri("SIPS:agent@127.0.0.1:5061", "agent", TLS, "") == (
        "sips:agent@127.0.0.1:5061"
    )


def test_a_sip_call_over_tls_or_tcp_names_its_transport() -> None:
    assert contact_uri("sip:agent@127.0.0.1", "agent", TLS, "") == (
        "sip:agent@127.0.0.1:5061;transport=tls"
    )
    tcp = Arrival(("127.0.0.1", 5060), "tcp")
    assert contact_uri("sip:agent@127.0.0.1", "agent", tcp, "pub.example") == (
        "sip:agent@pub.example:5060;transport=tcp"
    )
    # sips: over TCP is not secure end to end: never claimed.
    assert contact_uri("sips:agent@127.0.0.1", "agent", tcp, "").startswith("sip:")


def test_the_sdp_address_is_the_public_host_resolved_once() -> None:
    assert sdp_address("") == ""
    assert sdp_address("203.0.113.7") == "203.0.113.7"
    assert sdp_address("localhost") == "127.0.0.1"
    with pytest.raises(EngineStartError, match="does not resolve"):
        sdp_address("no-such-host.invalid")
