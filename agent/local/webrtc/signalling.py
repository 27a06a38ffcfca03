"""The local server's WebRTC calls endpoint: ``POST /v1/realtime/calls`` (and Azure's
``/openai/v1/realtime/calls``) takes an SDP offer and answers with ours, HTTP 201 and a
``Location`` naming the call, as the providers do. ``POST /v1/live/sessions`` (and Azure's
``/openai/v1/live/sessions``) creates a GPT-Live session the same way, in GPT-Live's shape:
a JSON body ``{"session": <configuration>, "transport": {"type": "webrtc", "sdp": offer}}``,
answered ``{"session": {"id"}, "transport": {"type": "webrtc", "sdp": answer}}``; a
configuration the real server would refuse gets HTTP 400 with its ``error`` object.

It is its own small aiohttp listener beside the WebSocket one: the ``websockets`` server
parses only GET upgrade requests (a POST with a body never reaches ``process_request``), and
moving the WebSocket side onto another server would change what every existing client and
test connects to. The body is the raw offer (``application/sdp``) or OpenAI's multipart form
(``sdp`` plus a ``session`` part whose ``model`` the session takes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from agent.local.events import ProtocolError, new_id
from agent.local.live.events import error_event
from agent.local.protocol import RealtimeProtocol
from agent.local.webrtc.channel import DataChannelConnection
from agent.local.webrtc.tracked import ServerTrack, TrackedRealtime
from agent.local.webrtc.tracked_live import TrackedLive
from agent.realtime.webrtc.ice import candidates_on
from agent.realtime.webrtc.media import TRACK_RATE, InboundAudio

log = structlog.get_logger(__name__)

CALLS_PATHS = ("/v1/realtime/calls", "/openai/v1/realtime/calls")
LIVE_SESSIONS_PATHS = ("/v1/live/sessions", "/openai/v1/live/sessions")
_LIVE_BODY_KEYS = {"session", "transport"}
_LIVE_TRANSPORT_KEYS = {"type", "sdp"}


class TrackedSession(Protocol):
    """A session whose audio rides the media tracks (``TrackedRealtime``, ``TrackedLive``)."""

    @property
    def track(self) -> ServerTrack: ...

    def caller_audio_in(self, pcm: bytes, now: float) -> None: ...

    def close(self) -> None: ...


class _UnusableOffer(ValueError):
    """aiortc could not answer the offer."""


#: Makes the protocol of one session (with the model the offer's session part named).
ProtocolFactory = Callable[[str | None], RealtimeProtocol]
#: Makes and starts one GPT-Live session from its creation request's ``session`` (at the
#: loop's time); raises ``ProtocolError`` for a configuration the server refuses.
LiveFactory = Callable[[object, float], TrackedLive]
#: Runs one session on its channel until it ends (the server's ``LocalSession``).
SessionRunner = Callable[[Any, DataChannelConnection], Awaitable[None]]


class CallsEndpoint:
    """Serves the SDP exchange on ``host``:``port`` and keeps each peer connection until its
    session ends."""

    def __init__(
        self,
        host: str,
        port: int,
        protocols: ProtocolFactory,
        run_session: SessionRunner,
        live: LiveFactory | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._protocols = protocols
        self._live = live
        self._run_session = run_session
        self._runner: web.AppRunner | None = None
        self._peers: set[RTCPeerConnection] = set()
        #: Sessions whose data channel opened: their session loop closes them.
        self._served: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        app = web.Application()
        for path in CALLS_PATHS:
            app.router.add_post(path, self._offer)
        if self._live is not None:
            for path in LIVE_SESSIONS_PATHS:
                app.router.add_post(path, self._live_offer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for pc in list(self._peers):
            await pc.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            offer, model = await _read_offer(request)
        except ValueError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        session = TrackedRealtime(self._protocols(model))
        try:
            answer = await self._answer(offer, session, request.path)
        except _UnusableOffer as exc:
            return web.Response(status=400, text=f"The SDP offer is unusable: {exc}\n")
        call_id = new_id("rtc")
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"{request.path}/{call_id}"},
        )

    async def _live_offer(self, request: web.Request) -> web.Response:
        """GPT-Live: create and start the session its JSON body configures."""
        assert self._live is not None
        try:
            session_config, offer = await _read_live_body(request)
            session = self._live(session_config, asyncio.get_running_loop().time())
        except ProtocolError as err:
            return web.json_response({"error": error_event(err)["error"]}, status=400)
        try:
            answer = await self._answer(offer, session, request.path)
        except _UnusableOffer as exc:
            error = ProtocolError(
                f"The SDP offer is unusable: {exc}", code="invalid_value", param="transport.sdp"
            )
            return web.json_response({"error": error_event(error)["error"]}, status=400)
        session_id = session.inner.config.id if session.inner.config is not None else ""
        return web.json_response(
            {"session": {"id": session_id}, "transport": {"type": "webrtc", "sdp": answer}}
        )

    async def _answer(self, offer: str, session: TrackedSession, path: str) -> str:
        """A peer connection for ``session`` answering ``offer``: its SDP answer.
        ``_UnusableOffer`` (the session closed, nothing kept) for an offer aiortc cannot use."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._peers.add(pc)
        pc.on("datachannel", lambda channel: self._channel(channel, pc, session, path))
        pc.on("track", lambda track: self._spawn(_caller_track(track, session)))
        pc.on("connectionstatechange", lambda: self._state(pc, session))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            pc.addTrack(session.track)
            with candidates_on(self.host):
                await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, AttributeError) as exc:
            # aiortc's SDP parser raises these on offers it cannot read.
            await self._drop(pc, session)
            raise _UnusableOffer(str(exc)[:200]) from None
        return str(pc.localDescription.sdp)

    def _channel(
        self, channel: RTCDataChannel, pc: RTCPeerConnection, session: TrackedSession, path: str
    ) -> None:
        connection = DataChannelConnection(channel, pc, path)
        self._served.add(id(session))

        async def serve() -> None:
            try:
                await self._run_session(session, connection)
            finally:
                await self._drop(pc, session)

        self._spawn(serve())

    def _state(self, pc: RTCPeerConnection, session: TrackedSession) -> None:
        if pc.connectionState in ("failed", "closed"):
            self._spawn(self._drop(pc, session))

    async def _drop(self, pc: RTCPeerConnection, session: TrackedSession) -> None:
        if pc in self._peers:
            self._peers.discard(pc)
            if id(session) in self._served:
                self._served.discard(id(session))
                session.track.stop()  # its session loop closed (or closes) the protocol
            else:
                session.close()  # never served: nothing else gives its resources back
            await pc.close()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _read_offer(request: web.Request) -> tuple[str, str | None]:
    """The offer and the model the session part names (None when there is none)."""
    model: object = None
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        offer = _field_text(form.get("sdp"))
        session = _field_text(form.get("session"))
        if session:
            try:
                parsed = json.loads(session)
            except ValueError:
                raise ValueError("The session part is not JSON.") from None
            model = parsed.get("model") if isinstance(parsed, dict) else None
    else:
        offer = await request.text()
    if not offer.startswith("v=0"):
        raise ValueError("The body holds no SDP offer (application/sdp, or a multipart sdp part).")
    return offer, model if isinstance(model, str) else None


def _field_text(value: object) -> str:
    """A form field's text, whether aiohttp kept it as text, bytes or an uploaded part."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return value.decode(errors="replace")
    if isinstance(value, web.FileField):
        return value.file.read().decode(errors="replace")
    return ""


async def _read_live_body(request: web.Request) -> tuple[object, str]:
    """The ``session`` and the offer of a GPT-Live creation request (``ProtocolError`` for a
    body the real server would refuse)."""
    try:
        body = json.loads(await request.text())
    except ValueError:
        raise ProtocolError("The body is not JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ProtocolError("The body must be a JSON object.", code="invalid_type")
    for key in body:
        if key not in _LIVE_BODY_KEYS:
            raise ProtocolError(f"Unknown parameter: '{key}'.", code="unknown_parameter", param=key)
    if "session" not in body:
        raise ProtocolError(
            "Missing required parameter: 'session'.",
            code="missing_required_parameter",
            param="session",
        )
    transport = body.get("transport")
    if not isinstance(transport, dict):
        raise ProtocolError(
            "Missing required parameter: 'transport'.",
            code="missing_required_parameter",
            param="transport",
        )
    for key in transport:
        if key not in _LIVE_TRANSPORT_KEYS:
            raise ProtocolError(
                f"Unknown parameter: 'transport.{key}'.",
                code="unknown_parameter",
                param=f"transport.{key}",
            )
    if transport.get("type") != "webrtc":
        raise ProtocolError(
            f"Invalid value: {transport.get('type')!r}. Supported values are: 'webrtc'.",
            code="invalid_value",
            param="transport.type",
        )
    offer = transport.get("sdp")
    if not isinstance(offer, str) or not offer.startswith("v=0"):
        raise ProtocolError(
            "'transport.sdp' must be the SDP offer.", code="invalid_value", param="transport.sdp"
        )
    return body["session"], offer


async def _caller_track(track: MediaStreamTrack, session: TrackedSession) -> None:
    """Feed the caller's track into the session's protocol until it ends."""
    if track.kind != "audio":
        return
    inbound = InboundAudio(track, TRACK_RATE)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(MediaStreamError):
        while True:
            session.caller_audio_in(await inbound.next(), loop.time())
