"""Ask a STUN server (RFC 5389 Binding) for our public address: the start-up check of
``sip.stun_server``.

baresip asks the STUN server for every call's RTP address before it lets the call ring
through to the agent; when the server does not answer, each call waits for libre's STUN
transaction to time out (about 40 s) and is then dropped, with nothing logged. So the engine
checks the server once at start and refuses to run with one that does not answer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct

MAGIC_COOKIE = 0x2112A442
_BINDING_REQUEST = 0x0001
_BINDING_SUCCESS = 0x0101
_MAPPED_ADDRESS = 0x0001
_XOR_MAPPED_ADDRESS = 0x0020
_HEADER = struct.Struct("!HHI12s")


def binding_request(transaction: bytes) -> bytes:
    """A Binding request without attributes."""
    return _HEADER.pack(_BINDING_REQUEST, 0, MAGIC_COOKIE, transaction)


def mapped_address(response: bytes, transaction: bytes) -> tuple[str, int] | None:
    """The (XOR-)MAPPED-ADDRESS of a Binding success response to ``transaction``; None for
    anything else."""
    if len(response) < _HEADER.size:
        return None
    kind, length, cookie, tid = _HEADER.unpack_from(response)
    if kind != _BINDING_SUCCESS or cookie != MAGIC_COOKIE or tid != transaction:
        return None
    body = response[_HEADER.size : _HEADER.size + length]
    found: tuple[str, int] | None = None
    while len(body) >= 4:
        attribute, size = struct.unpack_from("!HH", body)
        value = body[4 : 4 + size]
        if attribute in (_MAPPED_ADDRESS, _XOR_MAPPED_ADDRESS) and len(value) >= 8:
            _, family, port, address = struct.unpack_from("!BBHI", value)
            if family == 0x01:
                if attribute == _XOR_MAPPED_ADDRESS:
                    port ^= MAGIC_COOKIE >> 16
                    address ^= MAGIC_COOKIE
                found = (socket.inet_ntoa(struct.pack("!I", address)), port)
                if attribute == _XOR_MAPPED_ADDRESS:
                    return found
        body = body[4 + (size + 3) // 4 * 4 :]
    return found


class _Probe(asyncio.DatagramProtocol):
    def __init__(self, transaction: bytes) -> None:
        self.transaction = transaction
        self.answer: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        mapped = mapped_address(data, self.transaction)
        if mapped is not None and not self.answer.done():
            self.answer.set_result(mapped)


async def probe(
    server: tuple[str, int], bind_host: str, timeout_s: float = 2.0, tries: int = 4
) -> tuple[str, int] | None:
    """Our address as ``server`` sees it, asked from ``bind_host``; None when it does not
    answer within ``timeout_s`` (the request is sent ``tries`` times, evenly spaced)."""
    transaction = os.urandom(12)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Probe(transaction), local_addr=(bind_host, 0)
    )
    try:
        for _ in range(tries):
            transport.sendto(binding_request(transaction), server)
            try:
                return await asyncio.wait_for(asyncio.shield(protocol.answer), timeout_s / tries)
            except TimeoutError:
                continue
        return None
    finally:
        transport.close()
