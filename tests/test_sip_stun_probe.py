"""The start-up check of ``sip.stun_server``: a Binding request to a real UDP STUN server on
127.0.0.1 (testbed/stun_server.py) and to a port where nothing answers."""

from __future__ import annotations

import asyncio
import socket
import struct

from agent.config import STUN_PORT, stun_host_port
from agent.sip.stun_probe import mapped_address, probe
from testbed.peers import free_port
from testbed.stun_server import StunServer, binding_response


async def test_the_probe_learns_the_address_the_server_saw() -> None:
    async with StunServer("203.0.113.9") as server:
        assert await probe(server.address, "127.0.0.1") == ("203.0.113.9", server.answered[0][1])


async def test_a_server_that_does_not_answer_is_told_within_the_timeout() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await probe(("127.0.0.1", free_port()), "127.0.0.1", timeout_s=0.4) is None
    assert loop.time() - start < 1.0


def test_only_the_answer_to_our_transaction_counts() -> None:
    request = bytes.fromhex("0001 0000 2112a442") + b"T" * 12
    answer = binding_response(request, "198.51.100.4", 40000)
    assert answer is not None
    assert mapped_address(answer, b"T" * 12) == ("198.51.100.4", 40000)
    assert mapped_address(answer, b"U" * 12) is None
    assert mapped_address(answer[:10], b"T" * 12) is None


def test_stun_server_setting() -> None:
    assert stun_host_port("stun.example.net") == ("stun.example.net", STUN_PORT)
    assert stun_host_port("127.0.0.1:3479") == ("127.0.0.1", 3479)
    for bad in ("", ":3478", "host:0", "host:x", "stun:host", "[::1]:3478"):
        assert stun_host_port(bad) is None, bad


def test_an_rfc_3489_request_gets_a_plain_mapped_address() -> None:
    """pjsua asks from each call's RTP socket without the magic cookie (RFC 3489); the test
    server answers it as RFC 5389 section 12.2 has servers do, echoing the whole id."""
    transaction = b"\x01\x02\x03\x04" + b"R" * 12
    answer = binding_response(bytes.fromhex("0001 0000") + transaction, "198.51.100.4", 40000)
    assert answer is not None
    assert answer[4:20] == transaction
    attribute, size, _, family, port, address = struct.unpack_from("!HHBBHI", answer, 20)
    assert (attribute, size, family, port) == (0x0001, 8, 0x01, 40000)
    assert socket.inet_ntoa(struct.pack("!I", address)) == "198.51.100.4"
