"""A minimal STUN server (RFC 5389 Binding only) on 127.0.0.1 for tests: it answers each
Binding request with an XOR-MAPPED-ADDRESS naming ``public_ip`` and the request's source
port (a 1:1 NAT in front of the agent), and keeps the source of every request it answered.

An RFC 3489 request (no magic cookie: what pjsua sends from each call's RTP and RTCP
sockets) gets a MAPPED-ADDRESS instead, as RFC 5389 section 12.2 has servers answer old
clients."""

from __future__ import annotations

import asyncio
import socket
import struct

MAGIC_COOKIE = 0x2112A442
_BINDING_REQUEST = 0x0001
_BINDING_SUCCESS = 0x0101
_MAPPED_ADDRESS = 0x0001
_XOR_MAPPED_ADDRESS = 0x0020
_HEADER = struct.Struct("!HHI12s")


def binding_response(request: bytes, public_ip: str, port: int) -> bytes | None:
    """The success response to a Binding ``request`` (None for anything else)."""
    if len(request) < _HEADER.size:
        return None
    kind, _length, cookie, transaction = _HEADER.unpack_from(request)
    if kind != _BINDING_REQUEST:
        return None
    address = struct.unpack("!I", socket.inet_aton(public_ip))[0]
    if cookie == MAGIC_COOKIE:
        value = struct.pack("!BBHI", 0, 0x01, port ^ (MAGIC_COOKIE >> 16), address ^ MAGIC_COOKIE)
        attribute = struct.pack("!HH", _XOR_MAPPED_ADDRESS, len(value)) + value
    else:
        value = struct.pack("!BBHI", 0, 0x01, port, address)
        attribute = struct.pack("!HH", _MAPPED_ADDRESS, len(value)) + value
    # The whole 16-byte transaction id of RFC 3489 is echoed (the "cookie" is part of it).
    return _HEADER.pack(_BINDING_SUCCESS, len(attribute), cookie, transaction) + attribute


class StunServer(asyncio.DatagramProtocol):
    """``async with StunServer(public_ip) as server``: listening on ``server.address``."""

    def __init__(self, public_ip: str, host: str = "127.0.0.1") -> None:
        self.public_ip = public_ip
        self._host = host
        self.answered: list[tuple[str, int]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.address: tuple[str, int] = (host, 0)

    async def __aenter__(self) -> StunServer:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self._host, 0))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.address = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        response = binding_response(data, self.public_ip, addr[1])
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)
            self.answered.append(addr)
