"""The WebRTC transport of a realtime session: one aiortc peer connection per session, with
one audio track each way (Opus at 48 kHz) and the ``oai-events`` data channel.

It carries the protocol's events as text on the channel, exactly as the adapters produce
them, and audio on the tracks as 48 kHz PCM16 (the bridge resamples to and from the call).
Failures are told apart and each reported as one line that names the URL, never a key: the
SDP exchange's HTTP status (``signalling``), ICE (no candidate pair connected) and DTLS (the
pair connected, the handshake did not). Only host candidates are offered and no STUN server
is asked: the model's side is reachable directly (the providers are ICE-lite servers with
public addresses; the local server is on loopback, see ``ice``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from agent.realtime.connection import RealtimeConnectError
from agent.realtime.endpoint import RealtimeEndpoint
from agent.realtime.transport import MediaPath
from agent.realtime.webrtc.ice import candidates_on
from agent.realtime.webrtc.media import TRACK_RATE, InboundAudio, OutboundAudio
from agent.realtime.webrtc.signalling import exchange_sdp

#: The data channel's label: what OpenAI's and Azure's servers read the events from.
EVENTS_CHANNEL = "oai-events"
_CLOSED = object()


class WebRtcConnection:
    """A connected session: events on the data channel, audio on the tracks."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        channel: RTCDataChannel,
        outbound: OutboundAudio,
        endpoint: RealtimeEndpoint,
    ) -> None:
        self._pc = pc
        self._channel = channel
        self._outbound = outbound
        self.endpoint = endpoint
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._remote: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self._close_reason = ""
        self._failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        channel.on("message", self._inbox.put_nowait)
        channel.on("close", lambda: self._closed("the data channel closed"))
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)

    @property
    def media(self) -> MediaPath:
        return self

    @classmethod
    async def open(
        cls, endpoint: RealtimeEndpoint, timeout_s: float, session: dict[str, Any] | None = None
    ) -> WebRtcConnection:
        """Connect: offer, answer, ICE, DTLS and the data channel open, within ``timeout_s``.
        ``session`` is the configuration a GPT-Live exchange carries."""
        sdp = endpoint.sdp
        if sdp is None:
            raise ValueError("a WebRTC session needs the endpoint's SDP exchange")
        where = f"{endpoint.provider} {sdp.url}"
        # No ICE servers: aiortc would otherwise ask a public STUN server by default.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        outbound = OutboundAudio(TRACK_RATE)
        pc.addTrack(outbound)
        channel = pc.createDataChannel(EVENTS_CHANNEL)
        conn = cls(pc, channel, outbound, endpoint)
        try:
            await asyncio.wait_for(conn._negotiate(sdp.url, timeout_s, where, session), timeout_s)
        except TimeoutError:
            # Read the states before closing: a closed connection's say nothing any more.
            reason = conn._timeout_reason(where)
            await pc.close()
            raise RealtimeConnectError(reason) from None
        except BaseException:
            await pc.close()
            raise
        return conn

    async def _negotiate(
        self, url: str, timeout_s: float, where: str, session: dict[str, Any] | None
    ) -> None:
        assert self.endpoint.sdp is not None
        with candidates_on(urlsplit(url).hostname or ""):
            # aiortc gathers every candidate before it returns: the offer is complete.
            await self._pc.setLocalDescription(await self._pc.createOffer())
        answer = await exchange_sdp(
            self._pc.localDescription.sdp,
            self.endpoint.sdp,
            self.endpoint.headers,
            timeout_s,
            where,
            session,
        )
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        except ValueError as exc:
            raise RealtimeConnectError(f"{where}: the SDP answer is unusable: {exc}") from None
        opened: asyncio.Future[None] = asyncio.ensure_future(self._until_open())
        waiting: list[asyncio.Future[Any]] = [opened, self._failed]
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if opened not in done:
            opened.cancel()
            raise RealtimeConnectError(f"{where}: {self._failed.result()}")

    async def _until_open(self) -> None:
        if self._channel.readyState == "open":
            return
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_open() -> None:
            if not opened.done():
                opened.set_result(None)

        self._channel.on("open", on_open)
        await opened

    def _timeout_reason(self, where: str) -> str:
        ice = self._pc.iceConnectionState
        if ice in ("new", "checking", "failed"):
            return f"{where}: ICE failed: no candidate pair connected ({ice})"
        if self._pc.connectionState != "connected":
            return f"{where}: DTLS failed: the handshake did not complete"
        return f"{where}: the data channel did not open"

    def _on_state(self) -> None:
        state = self._pc.connectionState
        if state not in ("failed", "closed"):
            return
        if self._pc.iceConnectionState == "failed":
            why = "ICE failed: the connectivity checks found no working pair"
        elif state == "failed":
            why = "DTLS failed: the handshake or its certificate check failed"
        else:
            why = "the peer connection closed"
        if not self._failed.done():
            self._failed.set_result(why)
        self._closed(why)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not self._remote.done():
            self._remote.set_result(track)

    def _closed(self, why: str) -> None:
        if not self._close_reason:
            self._close_reason = why
            self._inbox.put_nowait(_CLOSED)

    # -- the transport ---------------------------------------------------------------------
    async def send(self, text: str) -> None:
        """Send one event on the data channel; raises once it is gone."""
        if self._channel.readyState != "open":
            raise ConnectionError(self._close_reason or "the data channel is not open")
        self._channel.send(text)

    def send_now(self, text: str) -> bool:
        """The data channel queues what it is given: a write never waits."""
        if self._channel.readyState != "open":
            return False
        self._channel.send(text)
        return True

    async def messages(self) -> AsyncIterator[str | bytes]:
        """The server's events until the channel or the connection closes."""
        while True:
            message = await self._inbox.get()
            if message is _CLOSED:
                self._inbox.put_nowait(_CLOSED)  # for a later reader (the close's drain)
                return
            if isinstance(message, str | bytes):
                yield message

    @property
    def close_reason(self) -> str:
        return self._close_reason

    async def close(self) -> None:
        self._closed("closed by us")
        self._outbound.stop()
        await self._pc.close()

    # -- the media path --------------------------------------------------------------------
    def send_audio(self, audio: bytes) -> None:
        """Caller audio, PCM16 at 48 kHz, queued for the outbound track."""
        self._outbound.push(audio)

    async def audio(self) -> AsyncIterator[bytes]:
        """The model's track as PCM16 at 48 kHz, a chunk per frame, until it ends."""
        track = await self._remote
        inbound = InboundAudio(track, TRACK_RATE)
        with contextlib.suppress(MediaStreamError):
            while True:
                yield await inbound.next()
