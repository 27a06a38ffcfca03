"""A minimal realtime server for the benchmarks: it streams audio and counts what it is sent.

No speech models and no VAD, so a benchmark measures the agent's bridge and not a model. It
speaks the part of the GA dialect the agent uses: ``session.update`` -> ``session.updated``;
``response.create`` (the agent's greeting) starts a reply; ``input_audio_buffer.append`` is
counted (without parsing JSON on the fast path: it arrives 50 times a second per call);
``conversation.item.truncate`` is recorded and answered. Replies stream like the real API's,
ahead of real time by ``lead_ms``, as pre-encoded ``response.output_audio.delta`` events.

With ``protocol="live"`` it speaks the part of GPT-Live's primary WebSocket the agent uses
instead (at ``/v1/live/sessions``): ``session.start`` -> ``session.started`` in the asked
format; ``session.instructions.append`` (the greeting) starts a reply, streamed as
``session.output_audio.delta``; ``session.input_audio.append`` is counted;
``session.close`` -> ``session.closed``.

Reply shapes (``Reply``): a steady tone (capacity), or marker bursts on a fixed schedule with
each send time recorded (latency). ``BenchSession.interrupt`` plays the server side of a
barge-in the way the real API does with ``interrupt_response``: ``speech_started``, then the
reply is cancelled. With ``markers=True`` the caller's audio is decoded and the arrival time
of every tone onset in it is recorded.

Run on its own (capacity benchmark, so its CPU is not the agent's):
``python -m bench.stream_server --out stats.json``; it prints ``{"url": ...}`` and serves
until SIGTERM, then writes per-session counters to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from agent.audio.g711 import ulaw_decode, ulaw_encode

RATE = 24000
BYTES_PER_MS = RATE * 2 // 1000
#: Session audio formats served: 24 kHz PCM16, or G.711 mu-law at 8 kHz (passthrough).
FORMATS = {"audio/pcm": ("pcm16", RATE, 2), "audio/pcmu": ("pcmu", 8000, 1)}
_APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'
_LIVE_APPEND_PREFIX = '{"type":"session.input_audio.append","audio":"'
_APPEND_SUFFIX = '"}'
#: Reply tone: 500 Hz is a whole number of cycles in any multiple of 2 ms, so every chunk of a
#: steady reply is the same bytes and is base64-encoded once.
REPLY_HZ = 500.0
REPLY_DBFS = -16.0
#: A session with fewer onsets than this in its first MARKER_LEG_WITHIN_S seconds of audio
#: is a steady-tone caller (one onset, where its audio starts): it is not looked at further.
MARKER_LEG_ONSETS = 3
MARKER_LEG_WITHIN_S = 3
#: Caller tone onsets (``markers``): a sample this loud after this much quiet (30 ms). The
#: caller's marker tone peaks near 4600; a soxr filter's ringing before an onset stays far
#: below.
ONSET_LEVEL = 1500
ONSET_QUIET_MS = 30

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_bench{next(_ids):08d}"


def reply_tone(ms: int, hz: float = REPLY_HZ, dbfs: float = REPLY_DBFS) -> bytes:
    """24 kHz PCM16 LE sine, ``ms`` long, at an RMS level of ``dbfs``."""
    t = np.arange(RATE * ms // 1000) / RATE
    amplitude = 32767 * 10 ** (dbfs / 20) * np.sqrt(2)
    return np.rint(np.sin(2 * np.pi * hz * t) * amplitude).astype("<i2").tobytes()


@dataclass(frozen=True)
class Reply:
    """What a response streams: ``chunk`` (24 kHz PCM16) sent ``count`` times.

    Chunk k is due at ``k * period_ms - lead_ms`` after the response starts. A period equal
    to the chunk's duration streams continuous audio; a longer one leaves silence between
    chunks (the marker shape, so that each chunk lands on an empty playout buffer).
    """

    chunk: bytes
    count: int
    period_ms: int
    lead_ms: int = 0

    @property
    def chunk_ms(self) -> int:
        return len(self.chunk) // BYTES_PER_MS

    @staticmethod
    def steady(seconds: float, chunk_ms: int = 100, lead_ms: int = 200) -> Reply:
        count = max(1, round(seconds * 1000 / chunk_ms))
        return Reply(reply_tone(chunk_ms), count, chunk_ms, lead_ms)

    @staticmethod
    def markers(count: int, tone_ms: int = 40, chunk_ms: int = 100, period_ms: int = 200) -> Reply:
        chunk = reply_tone(tone_ms) + bytes((chunk_ms - tone_ms) * BYTES_PER_MS)
        return Reply(chunk, count, period_ms, 0)


def _event(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, "event_id": new_id("event"), **fields})


def _session_object() -> dict[str, Any]:
    pcm = {"type": "audio/pcm", "rate": RATE}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": "gpt-realtime",
        "output_modalities": ["audio"],
        "audio": {"input": {"format": pcm}, "output": {"format": pcm}},
    }


def live_session_object(fmt: object = None) -> dict[str, Any]:
    """A GPT-Live session resource (``fmt``: the primary WebSocket's audio format)."""
    audio: dict[str, Any] = {"output": {"voice": "marin"}}
    if isinstance(fmt, dict):
        audio["format"] = fmt
    return {
        "id": new_id("sess"),
        "model": "gpt-live-1",
        "status": "active",
        "audio": audio,
        "delegation": {"type": "client", "acknowledgement_delay_ms": 0},
        "instructions": "",
        "input": [],
        "store": False,
        "triggers": [],
    }


@dataclass
class Onset:
    """A tone onset in the caller's audio: where in the appended audio, and when it arrived."""

    sample: int  # sample index (at the session's input rate) in all audio appended so far
    append_end: int  # samples appended up to the end of the append that carried it
    received_ns: int  # CLOCK_MONOTONIC when that append was read


@dataclass
class SentDelta:
    response_id: str
    item_id: str
    index: int  # chunk number in its response
    sent_ns: int


@dataclass
class Truncate:
    item_id: str
    audio_end_ms: int
    received_ns: int


@dataclass
class _Response:
    id: str
    item_id: str
    reply: Reply
    task: asyncio.Task[None] | None = None
    chunks_sent: int = 0


@dataclass
class BenchSession:
    """One connection: counters, and for latency/barge-in runs, timestamps."""

    connection: ServerConnection
    default_reply: Reply
    markers: bool = False
    protocol: str = "realtime"  # or "live" (GPT-Live's events)
    codec: str = "pcm16"  # of the caller's audio and of our replies, set by session.update
    rate: int = RATE
    sample_bytes: int = 2
    appends: int = 0
    empty_appends: int = 0
    appended_samples: int = 0
    deltas_sent: int = 0
    connected_ns: int = field(default_factory=time.monotonic_ns)
    closed_ns: int = 0
    onsets: list[Onset] = field(default_factory=list)
    sent: list[SentDelta] = field(default_factory=list)
    truncates: list[Truncate] = field(default_factory=list)
    interrupts_ns: list[int] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    response_done: asyncio.Event = field(default_factory=asyncio.Event)
    truncated: asyncio.Event = field(default_factory=asyncio.Event)
    _response: _Response | None = None
    _quiet_run: int = 1 << 30  # samples since the last loud one (the start counts as quiet)

    # -- client events -------------------------------------------------------------------
    async def receive(self, message: str | bytes) -> None:
        prefix = _LIVE_APPEND_PREFIX if self.protocol == "live" else _APPEND_PREFIX
        if isinstance(message, str) and message.startswith(prefix):
            payload = message[len(prefix) : -len(_APPEND_SUFFIX)]
            self._on_append(payload, time.monotonic_ns())
            return
        try:
            event = json.loads(message)
        except ValueError:
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if self.protocol == "live":
            await self._live_event(kind, event)
            return
        if kind == "input_audio_buffer.append":
            self._on_append(str(event.get("audio", "")), time.monotonic_ns())
        elif kind == "session.update":
            self._set_format(event.get("session"))
            await self.connection.send(_event("session.updated", session=_session_object()))
        elif kind == "response.create":
            await self.start_response(self.default_reply)
        elif kind == "conversation.item.truncate":
            await self._on_truncate(event)

    async def _live_event(self, kind: object, event: dict[str, Any]) -> None:
        if kind == "session.start":
            fmt = (event.get("session") or {}).get("audio", {}).get("format")
            if isinstance(fmt, dict) and fmt.get("type") in FORMATS:
                self.codec, _, self.sample_bytes = FORMATS[fmt["type"]]
                self.rate = int(fmt.get("rate", RATE))
            await self.connection.send(_event("session.started", session=live_session_object(fmt)))
        elif kind == "session.instructions.append" and self._response is None:
            await self.start_response(self.default_reply)
        elif kind == "session.close":
            seconds = (time.monotonic_ns() - self.connected_ns) // 1_000_000_000
            await self.connection.send(
                _event("session.closed", reason="close_requested", usage={"seconds": seconds})
            )

    def _set_format(self, session: Any) -> None:
        # GA shape: session.audio.input.format.type; the agent sends the same for both ways.
        try:
            kind = session["audio"]["input"]["format"]["type"]
        except (KeyError, TypeError):
            return
        if kind in FORMATS:
            self.codec, self.rate, self.sample_bytes = FORMATS[kind]

    def _on_append(self, payload: str, now_ns: int) -> None:
        self.appends += 1
        size = len(payload) // 4 * 3 - payload[-2:].count("=")
        if size <= 0:
            self.empty_appends += 1
            return
        if self.markers:
            self._find_onsets(base64.b64decode(payload), now_ns)
            if (
                len(self.onsets) < MARKER_LEG_ONSETS
                and self.appended_samples > MARKER_LEG_WITHIN_S * self.rate
            ):
                # A steady tone, not markers: nothing more to find here (and the time to
                # look at every append of every call is the helper's CPU, not the agent's).
                self.markers = False
        self.appended_samples += size // self.sample_bytes

    def _find_onsets(self, data: bytes, now_ns: int) -> None:
        pcm = ulaw_decode(data) if self.codec == "pcmu" else data
        samples = np.frombuffer(pcm, dtype="<i2")
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= ONSET_LEVEL)
        base = self.appended_samples
        end = base + len(samples)
        quiet = self.rate * ONSET_QUIET_MS // 1000
        previous = -1 - self._quiet_run  # index of the last loud sample, relative to this append
        for position in loud:
            if position - previous > quiet:
                self.onsets.append(Onset(base + int(position), end, now_ns))
            previous = int(position)
        self._quiet_run = len(samples) - 1 - previous

    async def _on_truncate(self, event: dict[str, Any]) -> None:
        item_id = str(event.get("item_id", ""))
        end_ms = int(event.get("audio_end_ms", 0))
        self.truncates.append(Truncate(item_id, end_ms, time.monotonic_ns()))
        await self.connection.send(
            _event(
                "conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms
            )
        )
        self.truncated.set()

    # -- server-side actions -------------------------------------------------------------
    async def start_response(self, reply: Reply) -> None:
        """Start a reply now (a reply still streaming is finished first)."""
        if self._response is not None:
            await self._stop_response("cancelled")
        response = _Response(new_id("resp"), new_id("item"), reply)
        self._response = response
        self.responses.append(response.id)
        self.response_done.clear()
        if self.protocol == "live":
            # GPT-Live has no responses or items: its audio deltas are all there is.
            response.task = asyncio.create_task(self._stream(response))
            return
        await self.connection.send(
            _event(
                "response.created",
                response={
                    "object": "realtime.response",
                    "id": response.id,
                    "status": "in_progress",
                    "output": [],
                },
            )
        )
        await self.connection.send(
            _event(
                "response.output_item.added",
                response_id=response.id,
                output_index=0,
                item={
                    "id": response.item_id,
                    "object": "realtime.item",
                    "type": "message",
                    "role": "assistant",
                    "status": "in_progress",
                    "content": [],
                },
            )
        )
        response.task = asyncio.create_task(self._stream(response))

    async def interrupt(self) -> int:
        """Say the caller started talking and cancel the reply; returns the write time."""
        sent_ns = time.monotonic_ns()
        self.interrupts_ns.append(sent_ns)
        await self.connection.send(
            _event(
                "input_audio_buffer.speech_started",
                audio_start_ms=0,
                item_id=new_id("item"),
            )
        )
        if self._response is not None:
            await self._stop_response("cancelled")
        return sent_ns

    def _wire_audio(self, pcm24k: bytes) -> bytes:
        if self.codec == "pcmu":
            # Every third sample: the reply tones are far below 4 kHz, so nothing aliases.
            return ulaw_encode(np.frombuffer(pcm24k, dtype="<i2")[::3].tobytes())
        return pcm24k

    async def _stream(self, response: _Response) -> None:
        reply = response.reply
        encoded = base64.b64encode(self._wire_audio(reply.chunk)).decode("ascii")
        head = (
            '{"type":"response.output_audio.delta","response_id":"'
            f'{response.id}","item_id":"{response.item_id}","output_index":0,'
            '"content_index":0,"event_id":"'
        )
        if self.protocol == "live":
            head = '{"type":"session.output_audio.delta","event_id":"'

        tail = f'","delta":"{encoded}"}}'
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            for index in range(reply.count):
                due = start + (index * reply.period_ms - reply.lead_ms) / 1000
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent_ns = time.monotonic_ns()
                await self.connection.send(head + new_id("event") + tail)
                response.chunks_sent += 1
                self.deltas_sent += 1
                if self.markers:
                    self.sent.append(SentDelta(response.id, response.item_id, index, sent_ns))
            await self._stop_response("completed", from_stream=True)
        except ConnectionClosed:
            return

    async def _stop_response(self, status: str, *, from_stream: bool = False) -> None:
        response, self._response = self._response, None
        if response is None:
            return
        if response.task is not None and not from_stream:
            response.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await response.task
        if self.protocol == "live":
            self.response_done.set()
            return
        ids = {"response_id": response.id, "item_id": response.item_id, "output_index": 0}
        await self.connection.send(_event("response.output_audio.done", **ids, content_index=0))
        await self.connection.send(
            _event(
                "response.done",
                response={
                    "object": "realtime.response",
                    "id": response.id,
                    "status": status,
                    "output": [{"id": response.item_id, "type": "message", "role": "assistant"}],
                },
            )
        )
        self.response_done.set()

    def closed(self) -> None:
        """The connection is gone: note when, and stop streaming into it."""
        self.closed_ns = time.monotonic_ns()
        response, self._response = self._response, None
        if response is not None and response.task is not None:
            response.task.cancel()

    def stats(self) -> dict[str, Any]:
        end = self.closed_ns or time.monotonic_ns()
        return {
            "appends": self.appends,
            "empty_appends": self.empty_appends,
            "appended_ms": self.appended_samples * 1000 // self.rate,
            "deltas_sent": self.deltas_sent,
            "connected_s": round((end - self.connected_ns) / 1e9, 3),
            "rate": self.rate,
            "onsets": [[o.sample, o.append_end, o.received_ns] for o in self.onsets],
        }


class BenchServer:
    """Accepts realtime WebSocket sessions on 127.0.0.1; every path is the GA endpoint.

    ``reply`` is what a ``response.create`` streams: one ``Reply`` for every session, or a
    function of the session's number (0, 1, ... in order of connection).
    """

    def __init__(
        self,
        reply: Reply | Callable[[int], Reply],
        *,
        markers: bool = False,
        protocol: str = "realtime",
    ) -> None:
        """``protocol``: "realtime", or "live" (GPT-Live's primary WebSocket)."""
        self.reply = reply
        self.markers = markers
        self.protocol = protocol
        self.sessions: list[BenchSession] = []
        self.new_session = asyncio.Event()
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        path = "/v1/live/sessions" if self.protocol == "live" else "/v1/realtime"
        return f"ws://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, compression=None, max_size=2**24, ping_interval=None
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=True)
            await server.wait_closed()

    async def _handle(self, connection: ServerConnection) -> None:
        reply = self.reply(len(self.sessions)) if callable(self.reply) else self.reply
        session = BenchSession(connection, reply, markers=self.markers, protocol=self.protocol)
        self.sessions.append(session)
        self.new_session.set()
        try:
            if self.protocol != "live":  # a Live server speaks only after session.start
                await connection.send(_event("session.created", session=_session_object()))
            async for message in connection:
                await session.receive(message)
        except ConnectionClosed:
            pass
        finally:
            session.closed()

    def stats(self) -> list[dict[str, Any]]:
        return [session.stats() for session in self.sessions]


async def _serve_until_stopped(reply: Reply, out: Path, markers: bool) -> None:
    server = BenchServer(reply, markers=markers)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(json.dumps({"url": server.url}), flush=True)
    await stop.wait()
    stats = server.stats()
    await server.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"sessions": stats}))
    print(json.dumps({"saved": str(out)}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="minimal realtime server for the benchmarks")
    parser.add_argument("--out", type=Path, required=True, help="per-session counters (JSON)")
    parser.add_argument("--reply-s", type=float, default=3600.0, help="length of each reply")
    parser.add_argument("--chunk-ms", type=int, default=100, help="audio per delta")
    parser.add_argument("--lead-ms", type=int, default=200, help="how far replies run ahead")
    parser.add_argument(
        "--markers", action="store_true",
        help="record the caller's tone onsets (a session with fewer than "
        f"{MARKER_LEG_ONSETS} in its first {MARKER_LEG_WITHIN_S} s of audio is a steady "
        "tone and stops being looked at)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    reply = Reply.steady(args.reply_s, args.chunk_ms, args.lead_ms)
    asyncio.run(_serve_until_stopped(reply, args.out, args.markers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
