"""WebSocket transport for the local server: the Realtime API (GA and beta dialects), GPT-Live
and the Responses API's WebSocket mode on one port; with ``webrtc=True`` also the Realtime
API's WebRTC calls endpoint and GPT-Live's WebRTC session creation, on a second (HTTP) port
(``agent.local.webrtc``), whose sessions run the same ``LocalSession`` loop on their data
channel.

Everything protocol-shaped happens in a sans-I/O protocol (``RealtimeProtocol``,
``LiveProtocol``, ``ResponsesProtocol``, one contract); this module only routes a connection
to its protocol (by request path and query, never by content), feeds frames in, wakes the
protocol when paced audio is due, writes events out through one queue so they leave in
exactly the order the protocol produced them, and closes the connection when the protocol
ended the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import time
from collections.abc import Callable
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent.local.backend import Backend, synthetic_backend
from agent.local.events import Event, ProtocolError
from agent.local.live.protocol import (
    LEAD_MS,
    MAX_SESSION_S,
    TRANSCRIPT_INTERVAL_MS,
    USAGE_INTERVAL_S,
    LiveProtocol,
)
from agent.local.protocol import RealtimeProtocol
from agent.local.responses_api.protocol import ResponsesProtocol
from agent.realtime.dialect import BETA_API_VERSION, Dialect

if TYPE_CHECKING:
    from agent.local.webrtc.signalling import CallsEndpoint
    from agent.local.webrtc.tracked_live import TrackedLive

log = structlog.get_logger(__name__)

GA_PATHS = ("/v1/realtime", "/openai/v1/realtime")
BETA_PATH = "/openai/realtime"
BETA_DEPLOYMENT = "gpt-4o-realtime-preview"
LIVE_PATHS = ("/v1/live/sessions", "/openai/v1/live/sessions", "/openai/v1/live")
"""GPT-Live's primary WebSocket: OpenAI's path, and Azure's in both shapes its docs show."""
RESPONSES_PATHS = ("/v1/responses", "/openai/v1/responses")


class Service(enum.Enum):
    """Which API a connection speaks."""

    REALTIME = "realtime"
    LIVE = "live"
    RESPONSES = "responses"


class SessionProtocol(Protocol):
    """What the transport needs of a connection's sans-I/O protocol (the contract
    ``agent.local.protocol`` describes; Live and Responses keep it too)."""

    waker: Callable[[], None]

    def start(self) -> list[Event]: ...

    def receive(self, message: str | bytes, now: float) -> list[Event]: ...

    def poll(self, now: float) -> list[Event]: ...

    def next_deadline(self) -> float | None: ...

    @property
    def ended(self) -> bool:
        """True once the protocol ended the session: the transport closes the connection."""
        ...

    def close(self) -> None: ...

    def error_event(self, err: ProtocolError, client_event_id: str | None = None) -> Event: ...


def service_for_path(path: str) -> Service | None:
    """The API a request path (with its query) asks for, or None when it is not ours."""
    route = urlsplit(path).path.rstrip("/")
    if route in LIVE_PATHS:
        return Service.LIVE
    if route in RESPONSES_PATHS:
        return Service.RESPONSES
    return Service.REALTIME if dialect_for_path(path) is not None else None


def dialect_for_path(path: str) -> Dialect | None:
    """The dialect a request path (with its query) asks for, or None when it is not ours.

    ``?dialect=ga|beta`` wins on any path; otherwise ``/v1/realtime`` and
    ``/openai/v1/realtime`` are GA and ``/openai/realtime?api-version=…-preview`` is beta.
    """
    parts = urlsplit(path)
    query = parse_qs(parts.query)
    if "dialect" in query:
        forced = query["dialect"][-1].lower()
        return Dialect(forced) if forced in (Dialect.GA, Dialect.BETA) else None
    route = parts.path.rstrip("/")
    if route in GA_PATHS:
        return Dialect.GA
    if route == BETA_PATH and query.get("api-version", [""])[-1].endswith("-preview"):
        return Dialect.BETA
    return None


def _model_for_path(path: str) -> str | None:
    models = parse_qs(urlsplit(path).query).get("model")
    return models[-1] if models else None


class LocalSession:
    """One connection: feeds its frames to the protocol, wakes the protocol when paced audio
    is due, and writes its events out through one queue, so they leave in exactly the order
    the protocol produced them; once the protocol ended the session and everything went out,
    closes the connection normally.

    Extension point: a subclass may watch the traffic by extending ``receive`` (each client
    frame, before the protocol sees it), ``send`` (every server event, in order, as it is
    queued) and ``written`` (each event once it was handed to the socket, with the
    ``time.monotonic()`` of that moment); all run on the event loop. The test suite records
    connections this way (``testbed/recording.py``); ``LocalRealtimeServer.open_session``
    makes the sessions.
    """

    def __init__(self, protocol: SessionProtocol, connection: Any) -> None:
        """``connection`` is a WebSocket ``ServerConnection``, or a WebRTC data channel
        dressed as one (``agent.local.webrtc.channel``)."""
        self.protocol = protocol
        self.connection = connection
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Serve the connection until it closes."""
        loop = asyncio.get_running_loop()
        self.protocol.waker = lambda: _wake_from_any_thread(loop, self._wake)
        self.send(self.protocol.start())
        writer = asyncio.create_task(self._write())
        pacer = asyncio.create_task(self._pace())
        try:
            async for message in self.connection:
                self.send(self.receive(message, loop.time()))
                self._wake.set()
        except ConnectionClosed:
            pass
        finally:
            for task in (writer, pacer):
                task.cancel()
            for task in (writer, pacer):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.protocol.close()

    def receive(self, message: str | bytes, now: float) -> list[Event]:
        """Hand one client frame to the protocol; the events it answers with."""
        try:
            return self.protocol.receive(message, now)
        except Exception:
            # A bug of ours must cost one error event, not the connection.
            log.exception("local realtime server failed on a client event")
            err = ProtocolError(
                "The server had an error processing your request.",
                code="server_error",
                kind="server_error",
            )
            return [self.protocol.error_event(err)]

    def send(self, events: list[Event]) -> None:
        """Queue ``events`` for the client, after everything queued before."""
        for event in events:
            self._queue.put_nowait(event)

    def written(self, event: Event, at: float) -> None:
        """``event`` was handed to the socket at ``at`` (``time.monotonic()``)."""

    async def _write(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self.connection.send(json.dumps(event))
            except ConnectionClosed:
                return
            self.written(event, time.monotonic())
            if self._queue.empty() and self.protocol.ended:
                # The protocol's last word (GPT-Live's session.closed) is out: close normally.
                await self.connection.close()
                return

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                self.send(self.protocol.poll(loop.time()))
                deadline = self.protocol.next_deadline()
                if deadline is None:
                    await self._wake.wait()
                    continue
                # asyncio.timeout, not wait_for (which can swallow a cancel on 3.11).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await self._wake.wait()
        except Exception:
            log.exception("local realtime server failed while streaming a response")
            await self.connection.close(1011, "internal error")


class LocalRealtimeServer:
    """An embedded server speaking the Realtime API (both dialects), GPT-Live and Responses
    WebSocket mode, for tests and cloud-free runs."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        backend: Backend | None = None,
        live_lead_ms: int = LEAD_MS,
        live_max_session_s: float = MAX_SESSION_S,
        live_usage_interval_s: float = USAGE_INTERVAL_S,
        live_transcript_interval_ms: int = TRANSCRIPT_INTERVAL_MS,
        webrtc: bool = False,
        webrtc_port: int = 0,
    ) -> None:
        """``backend`` defaults to the synthetic one. The ``live_*`` settings go to every
        GPT-Live session (``LiveProtocol``'s ``lead_ms``, ``max_session_s``,
        ``usage_interval_s`` and ``transcript_interval_ms``). ``webrtc`` also serves the
        Realtime calls endpoint and GPT-Live's session creation (SDP over HTTP) on
        ``webrtc_port``; off, aiortc is never imported."""
        self.host = host
        self.port = port
        self.backend = backend or synthetic_backend()
        self.live_lead_ms = live_lead_ms
        self.live_max_session_s = live_max_session_s
        self.live_usage_interval_s = live_usage_interval_s
        self.live_transcript_interval_ms = live_transcript_interval_ms
        self._server: Server | None = None
        self.webrtc = webrtc
        self._calls: CallsEndpoint | None = None
        self._webrtc_port = webrtc_port

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await serve(self._handle, self.host, self.port, process_request=self._route)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.webrtc:
            from agent.local.webrtc.signalling import CallsEndpoint

            self._calls = CallsEndpoint(
                self.host,
                self._webrtc_port,
                self._webrtc_protocol,
                self._serve_webrtc,
                live=self._webrtc_live,
            )
            await self._calls.start()

    def warm_up(self) -> None:
        """Start loading the backend's models in the background; returns at once."""
        if self.backend.warm_up is not None:
            self.backend.warm_up()

    async def stop(self) -> None:
        calls, self._calls = self._calls, None
        if calls is not None:
            await calls.stop()
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=True)
        await server.wait_closed()

    async def __aenter__(self) -> LocalRealtimeServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The GA endpoint, e.g. ``ws://127.0.0.1:8765/v1/realtime``."""
        return self.url_for(Dialect.GA)

    def url_for(self, dialect: Dialect) -> str:
        """The URL a client of ``dialect`` connects to (beta: the Azure preview shape)."""
        base = self._base()
        if dialect is Dialect.GA:
            return f"{base}{GA_PATHS[0]}"
        query = urlencode({"api-version": BETA_API_VERSION, "deployment": BETA_DEPLOYMENT})
        return f"{base}{BETA_PATH}?{query}"

    @property
    def live_url(self) -> str:
        """GPT-Live's primary WebSocket, e.g. ``ws://127.0.0.1:8765/v1/live/sessions``."""
        return f"{self._base()}{LIVE_PATHS[0]}"

    @property
    def responses_url(self) -> str:
        """Responses WebSocket mode, e.g. ``ws://127.0.0.1:8765/v1/responses``."""
        return f"{self._base()}{RESPONSES_PATHS[0]}"

    @property
    def calls_url(self) -> str | None:
        """The WebRTC calls endpoint, e.g. ``http://127.0.0.1:8766/v1/realtime/calls``; None
        unless the server serves WebRTC."""
        if self._calls is None:
            return None
        from agent.local.webrtc.signalling import CALLS_PATHS

        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._calls.port}{CALLS_PATHS[0]}"

    @property
    def live_calls_url(self) -> str | None:
        """Where GPT-Live WebRTC sessions are created, e.g.
        ``http://127.0.0.1:8766/v1/live/sessions``; None unless the server serves WebRTC."""
        if self._calls is None:
            return None
        from agent.local.webrtc.signalling import LIVE_SESSIONS_PATHS

        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._calls.port}{LIVE_SESSIONS_PATHS[0]}"

    def _base(self) -> str:
        if self.port == 0:
            raise RuntimeError("the local realtime server has not been started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        service = service_for_path(request.path)
        if service is None:
            return connection.respond(
                HTTPStatus.NOT_FOUND,
                "Not an endpoint of the local server: use /v1/realtime, /openai/v1/realtime, "
                f"{BETA_PATH}?api-version={BETA_API_VERSION} (or add ?dialect=ga|beta), "
                "/v1/live/sessions or /v1/responses.\n",
            )
        if service is Service.LIVE and urlsplit(request.path).query:
            # The real API takes no query parameters here (the model goes in session.start).
            return connection.respond(
                HTTPStatus.BAD_REQUEST,
                "GPT-Live takes no query parameters: connect without them and put the model "
                "in session.start.\n",
            )
        return None

    def open_session(self, protocol: SessionProtocol, connection: Any) -> LocalSession:
        """The session that serves one connection. Extension point: a subclass returns its
        own kind of ``LocalSession`` to watch the traffic."""
        return LocalSession(protocol, connection)

    async def _handle(self, connection: ServerConnection) -> None:
        path = connection.request.path if connection.request else ""
        service = service_for_path(path) or Service.REALTIME
        protocol = self._protocol_for(service, path)
        log.debug("local server connection", service=service.value, path=urlsplit(path).path)
        await self.open_session(protocol, connection).run()

    def _webrtc_protocol(self, model: str | None) -> RealtimeProtocol:
        """A WebRTC session's protocol: GA, as on OpenAI's and Azure's calls endpoints."""
        backend = self.backend
        return RealtimeProtocol(
            Dialect.GA,
            responder=backend.responder_factory(),
            model=model,
            vad_factory=backend.vad_factory,
            transcriber=backend.transcriber,
        )

    def _webrtc_live(self, session: object, now: float) -> TrackedLive:
        """A GPT-Live WebRTC session, started with its creation request's ``session``."""
        from agent.local.webrtc.tracked_live import TrackedLive

        protocol = self._protocol_for(Service.LIVE, LIVE_PATHS[0])
        assert isinstance(protocol, LiveProtocol)
        return TrackedLive(protocol, session, now)

    async def _serve_webrtc(self, protocol: SessionProtocol, connection: Any) -> None:
        await self.open_session(protocol, connection).run()

    def _protocol_for(self, service: Service, path: str) -> SessionProtocol:
        backend = self.backend
        if service is Service.LIVE:
            return LiveProtocol(
                responder=backend.responder_factory(),
                vad_factory=backend.vad_factory,
                transcriber=backend.transcriber,
                tools=backend.delegable_tools,
                lead_ms=self.live_lead_ms,
                transcript_interval_ms=self.live_transcript_interval_ms,
                usage_interval_s=self.live_usage_interval_s,
                max_session_s=self.live_max_session_s,
            )
        if service is Service.RESPONSES:
            return ResponsesProtocol(brain=backend.brain)
        return RealtimeProtocol(
            dialect_for_path(path) or Dialect.GA,
            responder=backend.responder_factory(),
            model=_model_for_path(path),
            vad_factory=backend.vad_factory,
            transcriber=backend.transcriber,
        )


def _wake_from_any_thread(loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
    # Worker threads finish after a connection (or its loop) may be gone: nothing to wake.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(wake.set)


async def run_local_server(host: str, port: int, backend: Backend | None = None) -> None:
    """Serve until cancelled (``voice-agent local-server``); logs the URLs once."""
    async with LocalRealtimeServer(host, port, backend=backend) as server:
        server.warm_up()
        log.info(
            "local realtime server listening",
            url=server.url,
            beta_url=server.url_for(Dialect.BETA),
            live_url=server.live_url,
            responses_url=server.responses_url,
            backend=server.backend.name,
        )
        await asyncio.Event().wait()
