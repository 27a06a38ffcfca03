"""Ask a STUN server (RFC 5389 Binding) for our public address: the start-up check of
``sip.stun_server``.

Both engines ask the STUN server for every call's RTP address before the call rings through
to the agent: baresip waits for libre's STUN transaction to time out (about 40 s) when the
server does not answer, and then drops the call, with nothing logged; pjsua blocks its only
thread (the asyncio loop's, in poll mode) for its STUN retransmissions and answers the call
with the local address. So each engine checks the server once at start (``check_server``) and
refuses to run with one that does not answer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import structlog

from agent.config import stun_host_port
from agent.sip.engine import EngineStartError

log = structlog.get_logger("sip")

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


def resolve_server(text: str) -> tuple[str, int] | None:
    """The IPv4 address and port ``sip.stun_server`` answers from (None without one): what
    the RTP source filter admits. Raises ``EngineStartError`` when the name does not
    resolve."""
    parsed = stun_host_port(text) if text else None
    if parsed is None:
        return None
    host, port = parsed
    try:
        found = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        raise EngineStartError(f"sip.stun_server {host!r} does not resolve: {exc}") from None
    return str(found[0][4][0]), port


async def check_server(server: tuple[str, int], sip_host: str) -> None:
    """Refuse to start with a STUN server that does not answer (every call would wait for
    it); log the public address it reports (``sip_stun_mapped``)."""
    bind = "0.0.0.0" if sip_host in ("", "0.0.0.0") else sip_host
    mapped = await probe(server, bind)
    if mapped is None:
        raise EngineStartError(
            f"sip.stun_server {server[0]}:{server[1]} does not answer STUN Binding "
            "requests (calls would wait for it and be dropped)"
        )
    log.info("sip_stun_mapped", server=f"{server[0]}:{server[1]}", public=mapped[0])
