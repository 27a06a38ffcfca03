"""A real HTTP receiver on 127.0.0.1 for the webhook and lookup tests: it records every
request and answers as scripted (a status per request, a slow answer, a JSON body).

HTTP/1.1 with keep-alive and ``Content-Length`` bodies: what the agent's client sends. It
can be stopped and started again on the same port, so a test can have the receiver
refuse connections for a while and then come up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from testbed.peers import free_port


@dataclass
class Received:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering.
    delay_s: float = 0.0


Handler = Callable[[Received], Awaitable[Reply] | Reply]

_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 408: "Request Timeout"}


class WebhookReceiver:
    """Answers with ``statuses`` in turn (the last one repeats), or with ``handler``."""

    def __init__(
        self,
        statuses: list[int] | None = None,
        handler: Handler | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port(socket.SOCK_STREAM)
        self.statuses = list(statuses or [200])
        self.handler = handler
        self.requests: list[Received] = []
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Event()
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=not-for-logs"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def wait_for(self, count: int, timeout_s: float) -> list[Received]:
        """The first ``count`` requests, once they have arrived."""
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.requests)} of {count} requests arrived")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.requests[:count]

    async def _reply_for(self, request: Received) -> Reply:
        if self.handler is not None:
            reply = self.handler(request)
            return await reply if not isinstance(reply, Reply) else reply
        index = min(len(self.requests) - 1, len(self.statuses) - 1)
        return Reply(self.statuses[index])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                self._arrived.set()
                reply = await self._reply_for(request)
                if reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                reason = _REASONS.get(reply.status, "Status")
                head = [f"HTTP/1.1 {reply.status} {reason}", f"Content-Length: {len(reply.body)}"]
                head += [f"{name}: {value}" for name, value in reply.headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + reply.body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    line = await reader.readline()
    if not line:
        return None
    method, path, _version = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        header = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not header:
            break
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(method, path, headers, body)


def json_reply(value: Any, delay_s: float = 0.0) -> Reply:
    return Reply(200, json.dumps(value).encode(), {"Content-Type": "application/json"}, delay_s)
