"""The kernel filter on a call's RTP socket: only the caller's address gets through."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from agent.sip.rtp_filter import (
    expected_source,
    find_udp_socket,
    is_private,
    nat_networks,
    restrict_source,
    split_address,
)


@pytest.fixture
def sockets() -> Iterator[dict[str, socket.socket]]:
    made: dict[str, socket.socket] = {}
    for name, host in (
        ("rx", "127.0.0.1"),
        ("a", "127.0.0.1"),
        ("b", "127.0.0.1"),
        ("c", "127.0.0.2"),
    ):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        made[name] = sock
    made["rx"].settimeout(0.2)
    yield made
    for sock in made.values():
        sock.close()


def _arrivals(s: dict[str, socket.socket]) -> list[bytes]:
    for name in ("a", "b", "c"):
        s[name].sendto(name.encode(), s["rx"].getsockname())
    got = []
    try:
        while True:
            got.append(s["rx"].recv(16))
    except TimeoutError:
        return got


def test_only_the_allowed_source_reaches_the_socket(sockets: dict[str, socket.socket]) -> None:
    rx = sockets["rx"]
    fd = find_udp_socket(rx.getsockname()[1])
    assert fd == rx.fileno()
    assert _arrivals(sockets) == [b"a", b"b", b"c"]
    restrict_source(fd, "127.0.0.1", sockets["a"].getsockname()[1])
    assert _arrivals(sockets) == [b"a"]
    restrict_source(fd, "127.0.0.1")  # any port of the address: a NAT-ed caller, unlatched
    assert _arrivals(sockets) == [b"a", b"b"]
    restrict_source(fd, "127.0.0.2", sockets["c"].getsockname()[1])
    assert _arrivals(sockets) == [b"c"]


def test_the_stun_server_is_let_through_besides_the_caller(
    sockets: dict[str, socket.socket],
) -> None:
    rx = sockets["rx"]
    stun = ("127.0.0.2", sockets["c"].getsockname()[1])
    restrict_source(rx.fileno(), "127.0.0.1", sockets["a"].getsockname()[1], (stun,))
    assert _arrivals(sockets) == [b"a", b"c"]
    # Exactly the STUN server's port: another port of its address stays out.
    restrict_source(rx.fileno(), "127.0.0.1", sockets["a"].getsockname()[1], (("127.0.0.2", 9),))
    assert _arrivals(sockets) == [b"a"]
    # With an unlatched caller (any port of its address) too.
    restrict_source(rx.fileno(), "127.0.0.1", None, (stun,))
    assert _arrivals(sockets) == [b"a", b"b", b"c"]


def test_expected_source() -> None:
    # The SDP's address, exactly, when the caller can be reached there.
    assert expected_source("127.0.0.1", 4000, "127.0.0.1") == ("127.0.0.1", 4000)
    assert expected_source("203.0.113.9", 4000, "198.51.100.1") == ("203.0.113.9", 4000)
    # Behind NAT: the signalling address, port to be latched.
    assert expected_source("192.168.1.20", 4000, "198.51.100.1") == ("198.51.100.1", None)
    assert is_private("100.64.1.1") and is_private("10.1.2.3") and not is_private("127.0.0.1")


def test_nat_networks_decide_who_is_behind_nat() -> None:
    # sip.nat_networks = []: a LAN whose private SDP addresses are reachable as they are.
    assert expected_source("192.168.1.20", 4000, "10.0.0.5", nat_networks(())) == (
        "192.168.1.20",
        4000,
    )
    # Another range of the operator's.
    ours = nat_networks(("198.18.0.0/15",))
    assert expected_source("198.18.3.4", 4000, "203.0.113.7", ours) == ("203.0.113.7", None)
    assert expected_source("192.168.1.20", 4000, "203.0.113.7", ours) == ("192.168.1.20", 4000)
    # The caller's SDP naming its own signalling address is never taken for NAT.
    assert expected_source("198.18.3.4", 4000, "198.18.3.4", ours) == ("198.18.3.4", 4000)
    with pytest.raises(ValueError):
        nat_networks(("10.0.0.0/33",))


def test_split_address() -> None:
    assert split_address("127.0.0.1:4000") == ("127.0.0.1", 4000)
    assert split_address("0.0.0.0:4000") is None
    assert split_address("127.0.0.1:0") is None
    assert split_address("[::1]:4000") is None
    assert split_address("") is None
