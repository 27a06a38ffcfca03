"""A raw-UDP SIP peer for the abuse tests: sends what a scanner or an attacker would send.

It builds requests by hand (with or without SDP, any method, any user part, from any
loopback address), collects every response by Call-ID, and records any request the agent
sends to it (a NOTIFY for a SUBSCRIBE would be one). Bounded waits only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

_counter = itertools.count(1)


@dataclass
class SipMessage:
    first_line: str
    headers: dict[str, str]
    body: str

    @property
    def code(self) -> int:
        parts = self.first_line.split(" ", 2)
        return int(parts[1]) if self.first_line.startswith("SIP/2.0") else 0

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def parse(data: bytes) -> SipMessage:
    text = data.decode(errors="replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return SipMessage(lines[0], headers, body)


def sdp_offer(host: str, rtp_port: int, codec_pt: int = 0) -> str:
    codec = {0: "PCMU", 8: "PCMA", 18: "G729"}[codec_pt]
    return (
        f"v=0\r\no=probe 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP {codec_pt}\r\na=rtpmap:{codec_pt} {codec}/8000\r\n"
    )


@dataclass
class SentRequest:
    call_id: str
    branch: str
    from_tag: str
    cseq: int
    method: str
    uri: str
    responses: list[SipMessage] = field(default_factory=list)


class SipProbe(asyncio.DatagramProtocol):
    """One UDP socket on ``host``; ``send`` a request, ``final`` waits for its answer."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.sent: dict[str, SentRequest] = {}
        self.requests_received: list[SipMessage] = []
        self._changed = asyncio.Event()

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> SipProbe:
        probe = cls(host)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: probe, local_addr=(host, 0))
        return probe

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse(data)
        if message.code:
            sent = self.sent.get(message.header("call-id"))
            if sent is not None:
                sent.responses.append(message)
        else:
            self.requests_received.append(message)
        self._changed.set()

    def send(
        self,
        method: str,
        target: tuple[str, int],
        *,
        user: str = "agent",
        headers: tuple[str, ...] = (),
        body: str = "",
        content_type: str = "application/sdp",
        to_tag: str = "",
    ) -> SentRequest:
        """Send one new request (its own Call-ID) to ``target``."""
        host, port = target
        sent = SentRequest(
            call_id=f"probe-{next(_counter)}-{uuid.uuid4().hex[:8]}",
            branch=f"z9hG4bK{uuid.uuid4().hex[:12]}",
            from_tag=uuid.uuid4().hex[:8],
            cseq=1,
            method=method,
            uri=f"sip:{user}@{host}:{port}",
        )
        self.sent[sent.call_id] = sent
        to = f"<sip:{user}@{host}:{port}>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"{method} {sent.uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={sent.branch};rport",
            f"From: <sip:probe@{self.host}:{self.port}>;tag={sent.from_tag}",
            f"To: {to}",
            f"Call-ID: {sent.call_id}",
            f"CSeq: 1 {method}",
            f"Contact: <sip:probe@{self.host}:{self.port}>",
            "Max-Forwards: 70",
            *headers,
        ]
        if body:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.raw((("\r\n".join(lines)) + "\r\n\r\n" + body).encode(), target)
        return sent

    def ack(
        self, sent: SentRequest, response: SipMessage, target: tuple[str, int], body: str = ""
    ) -> None:
        """ACK a final response: the INVITE's branch for a non-2xx (RFC 3261 17.1.1.3), a new
        one for a 2xx (a transaction of its own); ``body`` is an SDP answer, if any."""
        branch = sent.branch if response.code >= 300 else f"z9hG4bK{uuid.uuid4().hex[:12]}"
        lines = [
            f"ACK {sent.uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport",
            f"From: <sip:probe@{self.host}:{self.port}>;tag={sent.from_tag}",
            f"To: {response.header('to')}",
            f"Call-ID: {sent.call_id}",
            "CSeq: 1 ACK",
            "Max-Forwards: 70",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.raw(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), target)

    async def request_from_agent(self, method: str, timeout_s: float) -> SipMessage | None:
        """The first request of ``method`` the agent sent to this probe (e.g. its BYE)."""
        return await self._first(
            lambda: self.requests_received,
            lambda m: m.first_line.startswith(method + " "),
            timeout_s,
        )

    def raw(self, data: bytes, target: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, target)

    async def final(self, sent: SentRequest, timeout_s: float = 5.0) -> SipMessage | None:
        """The first final (>= 200) response to ``sent``, or None after ``timeout_s``."""
        return await self._first(lambda: sent.responses, lambda r: r.code >= 200, timeout_s)

    async def _first(
        self,
        messages: Callable[[], list[SipMessage]],
        wanted: Callable[[SipMessage], bool],
        timeout_s: float,
    ) -> SipMessage | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            found = next((m for m in messages() if wanted(m)), None)
            remaining = deadline - loop.time()
            if found is not None or remaining <= 0:
                return found
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
