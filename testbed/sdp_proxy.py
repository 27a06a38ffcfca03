"""A WebRTC SDP exchange that goes wrong on purpose: it forwards the offer to a real calls
endpoint (the local server's) and spoils the answer on the way back, so the agent meets the
failures a provider or a network can cause after the HTTP exchange succeeded.

- ``ice``: every candidate of the answer points at a UDP port nobody listens on, and its ICE
  credentials are another peer's (the server answered, but no connectivity check between the
  two ever succeeds: the server's own checks reach the agent under the wrong name);
- ``dtls``: the answer's certificate fingerprints are another certificate's (ICE connects, the
  DTLS handshake's certificate check fails);
- ``http401``: the exchange itself is refused, as with a rejected key.
"""

from __future__ import annotations

import re
from types import TracebackType

import aiohttp
from aiohttp import web

from testbed.peers import HOST, free_port

_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ \S+ )(\d+)( .*)$")
_FINGERPRINT = re.compile(r"^(a=fingerprint:sha-\d+ )([0-9A-Fa-f:]+)$")
_CREDENTIAL = re.compile(r"^(a=ice-(?:ufrag|pwd):)(\S+)$")
SPOILS = ("ice", "dtls", "http401")


def spoil_answer(answer: str, spoil: str) -> str:
    """``answer`` with its candidates and credentials (``ice``) or its fingerprint (``dtls``)
    spoiled."""
    if spoil not in ("ice", "dtls"):
        raise ValueError(f"not a way to spoil an answer: {spoil!r}")
    port = free_port()  # nothing answers there
    lines, spoiled = [], 0
    for line in answer.split("\r\n"):
        new = line
        if spoil == "ice":
            new = _CANDIDATE.sub(lambda m: f"{m[1]}{port}{m[3]}", new)
            new = _CREDENTIAL.sub(lambda m: m[1] + "x" * len(m[2]), new)
        else:
            new = _FINGERPRINT.sub(lambda m: m[1] + ":".join("00" for _ in m[2].split(":")), new)
        spoiled += new != line
        lines.append(new)
    assert spoiled, f"the answer has nothing to spoil for {spoil!r}"
    return "\r\n".join(lines)


class SpoilingProxy:
    """Serves ``POST <path>`` on loopback, forwarding to ``target`` (a Realtime calls URL)."""

    def __init__(self, target: str, spoil: str, path: str = "/v1/realtime/calls") -> None:
        if spoil not in SPOILS:
            raise ValueError(f"spoil must be one of {SPOILS}")
        self.target = target
        self.spoil = spoil
        self.path = path
        self.offers = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> SpoilingProxy:
        app = web.Application()
        app.router.add_post(self.path, self._offer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        server = site._server
        assert server is not None
        port = getattr(server, "sockets", [])[0].getsockname()[1]
        self.url = f"http://{HOST}:{port}{self.path}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _offer(self, request: web.Request) -> web.Response:
        self.offers += 1
        if self.spoil == "http401":
            return web.json_response(
                {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}},
                status=401,
            )
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/sdp")}
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.target, data=body, headers=headers) as reply,
        ):
            answer = await reply.text()
            status = reply.status
        if status >= 300:
            return web.Response(status=status, text=answer)
        return web.Response(
            status=201, text=spoil_answer(answer, self.spoil), content_type="application/sdp"
        )
