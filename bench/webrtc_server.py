"""The bench's realtime server over WebRTC: ``BenchSession`` on an aiortc peer connection.

The session logic is ``stream_server``'s, unchanged: it reads the events of the data channel
and writes its own; this module only moves audio the way a WebRTC server does. Its deltas go
on the outbound track instead of the channel, and each marker delta's time becomes the moment
its first frame left on the track (what a WebRTC server's "sent" is). The caller's track is
fed to the session as appends of 48 kHz PCM16, stamped when the frame was read. Neither way
resamples with a filter (samples are repeated or dropped), so no delay of the server's own is
counted against the agent.

GPT-Live (``protocol="live"``) is created at ``live_calls_url`` as GPT-Live's own WebRTC
sessions are: a JSON body with the session and the offer, the answer in a JSON reply, and
``session.started`` as the channel's first event; its deltas have no playout events around
them (GPT-Live has none).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from typing import Any

import numpy as np
from aiohttp import web
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from agent.realtime.webrtc.ice import candidates_on
from agent.realtime.webrtc.media import TRACK_RATE, InboundAudio, OutboundAudio
from bench.stream_server import (
    BenchServer,
    BenchSession,
    _event,
    _session_object,
    live_session_object,
    new_id,
)

_DELTAS = ('"type":"response.output_audio.delta"', '"type":"session.output_audio.delta"')


class _Track(OutboundAudio):
    """The outbound track, noting when each queued delta's first sample went out."""

    def __init__(self) -> None:
        super().__init__(TRACK_RATE)
        self.session: BenchSession | None = None
        self._sent_samples = 0
        self._queued_samples = 0
        self._starts: list[int] = []  # where each delta begins, in samples sent overall
        self._stamped = 0

    def queue_delta(self, pcm48: bytes) -> None:
        self._queued_samples = max(self._queued_samples, self._sent_samples)
        self._starts.append(self._queued_samples)
        self._queued_samples += len(pcm48) // 2
        self.push(pcm48)

    def on_frame(self, samples: int) -> None:
        now_ns = time.monotonic_ns()
        self._sent_samples += samples
        session = self.session
        while (
            session is not None
            and self._stamped < len(self._starts)
            and self._starts[self._stamped] < self._sent_samples
            and self._stamped < len(session.sent)
        ):
            session.sent[self._stamped].sent_ns = now_ns
            self._stamped += 1


class _ChannelLink:
    """What ``BenchSession`` writes to: deltas to the track, everything else to the channel."""

    def __init__(self, channel: RTCDataChannel, track: _Track) -> None:
        self._channel = channel
        self._track = track
        self._playing: str | None = None

    async def send(self, text: str) -> None:
        if _DELTAS[1] in text:
            # GPT-Live: only the audio, onto the track.
            pcm24 = np.frombuffer(base64.b64decode(json.loads(text)["delta"]), dtype="<i2")
            self._track.queue_delta(np.repeat(pcm24, 2).tobytes())
            return
        if _DELTAS[0] in text:
            event = json.loads(text)
            if event["response_id"] != self._playing:
                # A WebRTC server's playout events: the agent plays track audio between them.
                self._playing = event["response_id"]
                self._write(_event("output_audio_buffer.started", response_id=self._playing))
            pcm24 = np.frombuffer(base64.b64decode(event["delta"]), dtype="<i2")
            self._track.queue_delta(np.repeat(pcm24, 2).tobytes())
            return
        self._write(text)
        if '"response.done"' in text and self._playing is not None:
            self._write(_event("output_audio_buffer.stopped", response_id=self._playing))
            self._playing = None

    def _write(self, text: str) -> None:
        if self._channel.readyState == "open":
            self._channel.send(text)


class WebRtcBenchServer(BenchServer):
    """``BenchServer`` answering SDP offers at ``calls_url`` (WebSocket stays served too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._runner: web.AppRunner | None = None
        self._peers: set[RTCPeerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls_port = 0

    @property
    def calls_url(self) -> str:
        return f"http://127.0.0.1:{self.calls_port}/v1/realtime/calls"

    @property
    def live_calls_url(self) -> str:
        return f"http://127.0.0.1:{self.calls_port}/v1/live/sessions"

    async def start(self) -> None:
        await super().start()
        app = web.Application()
        app.router.add_post("/v1/realtime/calls", self._offer)
        app.router.add_post("/v1/live/sessions", self._live_offer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        self.calls_port = getattr(server, "sockets", [])[0].getsockname()[1]

    async def stop(self) -> None:
        for pc in list(self._peers):
            await pc.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await super().stop()

    async def _offer(self, request: web.Request) -> web.Response:
        form = await request.post()
        field = form.get("sdp")
        # aiohttp keeps a non-text part (application/sdp) as bytes.
        offer = field.decode() if isinstance(field, bytes | bytearray) else str(field)
        answer = await self._answer(offer)
        return web.Response(status=201, text=answer, content_type="application/sdp")

    async def _live_offer(self, request: web.Request) -> web.Response:
        body = await request.json()
        answer = await self._answer(body["transport"]["sdp"])
        reply = {"session": {"id": new_id("sess")}, "transport": {"type": "webrtc", "sdp": answer}}
        return web.json_response(reply)

    async def _answer(self, offer: str) -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._peers.add(pc)
        track = _Track()
        reply = self.reply(len(self.sessions)) if callable(self.reply) else self.reply
        pc.on("datachannel", lambda channel: self._spawn(self._serve(channel, track, reply)))
        pc.on("track", lambda remote: self._spawn(self._caller(remote, track)))
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        pc.addTrack(track)
        with candidates_on("127.0.0.1"):
            await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def _serve(self, channel: RTCDataChannel, track: _Track, reply: Any) -> None:
        inbox: asyncio.Queue[str | None] = asyncio.Queue()
        channel.on("message", inbox.put_nowait)
        channel.on("close", lambda: inbox.put_nowait(None))
        link: Any = _ChannelLink(channel, track)
        session = BenchSession(link, reply, markers=self.markers, protocol=self.protocol)
        # The track carries 48 kHz PCM16 both ways: onsets are found at that rate.
        session.rate = TRACK_RATE
        track.session = session
        self.sessions.append(session)
        self.new_session.set()
        if self.protocol == "live":
            # The HTTP request started the session; no format (the media negotiated it).
            await link.send(_event("session.started", session=live_session_object()))
        else:
            await link.send(_event("session.created", session=_session_object()))
        try:
            while (message := await inbox.get()) is not None:
                if '"session.update"' in message:
                    # No audio format over WebRTC: keep 48 kHz PCM16 for the track's audio.
                    await link.send(_event("session.updated", session=_session_object()))
                    continue
                await session.receive(message)
        finally:
            session.closed()

    async def _caller(self, remote: MediaStreamTrack, track: _Track) -> None:
        inbound = InboundAudio(remote, TRACK_RATE)
        with contextlib.suppress(MediaStreamError):
            while True:
                pcm = await inbound.next()
                session = track.session
                if session is not None:
                    session._on_append(base64.b64encode(pcm).decode("ascii"), time.monotonic_ns())

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
