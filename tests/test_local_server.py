"""The local realtime server over real WebSockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent.audio.levels import rms_dbfs
from agent.local.protocol import LEAD_MS
from agent.local.replies import Reply, ReplyRequest
from agent.local.server import dialect_for_path, run_local_server
from agent.realtime.dialect import Dialect, OutputEvent, wire_name
from testbed.oracle import validate_client_event, validate_server_event
from testbed.recording import RecordingServer
from tests.local_helpers import append_events, server_vad, session_update, silence, tone

pytestmark = pytest.mark.timeout(30)


class Client:
    """A thin test client that validates everything it sends and receives."""

    def __init__(self, ws: ClientConnection, dialect: Dialect) -> None:
        self.ws = ws
        self.dialect = dialect
        self.received: list[dict[str, Any]] = []
        self.sent = 0

    async def send(self, event: dict[str, Any]) -> None:
        validate_client_event(self.dialect, event)
        await self.ws.send(json.dumps(event))
        self.sent += 1

    async def recv(self) -> dict[str, Any]:
        event = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        validate_server_event(self.dialect, event)
        self.received.append(event)
        return event

    async def until(self, kind: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            events.append(await self.recv())
            if events[-1]["type"] == kind:
                return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


class ShortResponder:
    def reply(self, request: ReplyRequest) -> Reply:
        # -13 dBFS: -16 on the old reference (tests/local_helpers.py).
        return Reply("Okay.", iter([tone(400, dbfs=-13).astype("<i2").tobytes()]))


@pytest.mark.parametrize("dialect", [Dialect.GA, Dialect.BETA])
async def test_a_spoken_turn_gets_a_streamed_audible_reply(dialect: Dialect) -> None:
    async with RecordingServer() as server, connect(server.url_for(dialect)) as ws:
        client = Client(ws, dialect)
        assert (await client.recv())["type"] == "session.created"
        vad = server_vad(prefix_padding_ms=0, silence_duration_ms=300)
        await client.send(session_update(dialect, turn_detection=vad))
        assert (await client.recv())["type"] == "session.updated"
        audio = np.concatenate([silence(300), tone(800), silence(700)])
        for event in append_events(audio):
            await client.send(event)
        started = time.monotonic()
        events = await client.until("response.done")
        elapsed = time.monotonic() - started

        kinds = types(events)
        assert (
            kinds.index("input_audio_buffer.speech_started")
            < kinds.index("input_audio_buffer.speech_stopped")
            < kinds.index("input_audio_buffer.committed")
            < kinds.index("response.created")
        )
        speech = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
        assert abs(speech["audio_start_ms"] - 300) <= 100
        assert events[-1]["response"]["status"] == "completed"
        delta = wire_name(dialect, OutputEvent.AUDIO_DELTA)
        reply = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == delta)
        samples = np.frombuffer(reply, dtype="<i2")
        assert len(samples) / 24000 >= 1.5
        assert rms_dbfs(samples.tobytes()) > -27  # -30 on the old reference: audible
        # Paced on the wall clock: it cannot arrive much faster than it plays.
        assert elapsed >= len(samples) / 24000 - LEAD_MS / 1000 - 0.2

        (session,) = server.sessions
        assert session.dialect is dialect
        assert len(session.received) == client.sent
        assert session.sent == client.received
        assert session.input_rate == 24000
        assert len(session.input_audio) == len(audio) * 2


@pytest.mark.parametrize(
    ("path", "dialect"),
    [
        ("/v1/realtime?model=gpt-realtime", Dialect.GA),
        ("/openai/v1/realtime?model=my-deployment", Dialect.GA),
        ("/openai/realtime?api-version=2025-04-01-preview&deployment=d", Dialect.BETA),
        ("/v1/realtime?dialect=beta", Dialect.BETA),
        ("/openai/realtime?api-version=2025-04-01-preview&dialect=ga", Dialect.GA),
        ("/anything?dialect=beta", Dialect.BETA),
        ("/openai/realtime", None),
        ("/openai/realtime?api-version=v1", None),
        ("/v1/realtime?dialect=klingon", None),
        ("/", None),
    ],
)
def test_dialect_comes_from_path_and_query(path: str, dialect: Dialect | None) -> None:
    assert dialect_for_path(path) == dialect


async def test_routing_over_the_wire() -> None:
    async with RecordingServer() as server:
        base = server.url.removesuffix("/v1/realtime")
        async with connect(f"{server.url}?dialect=beta") as ws:
            created = json.loads(await ws.recv())
            validate_server_event(Dialect.BETA, created)
            assert created["session"]["input_audio_format"] == "pcm16"
        async with connect(f"{base}/openai/v1/realtime?model=gpt-realtime-mini") as ws:
            created = json.loads(await ws.recv())
            assert created["session"]["model"] == "gpt-realtime-mini"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{base}/nope"):
                pass
        assert refused.value.response.status_code == 404
        assert [s.dialect for s in server.sessions] == [Dialect.BETA, Dialect.GA]


async def test_bad_frames_emit_cancel_and_stop() -> None:
    server = RecordingServer(responder_factory=ShortResponder)
    await server.start()
    try:
        async with connect(server.url) as ws:
            client = Client(ws, Dialect.GA)
            await client.recv()
            await ws.send(b"\x00\x01")
            await ws.send("{not json")
            await ws.send(json.dumps({"type": "response.dance"}))
            errors = [await client.recv() for _ in range(3)]
            assert types(errors) == ["error"] * 3
            (session,) = server.sessions
            injected = {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0}
            await session.emit({**injected, "item_id": "item_x"})
            assert (await client.recv())["item_id"] == "item_x"

            await client.send({"type": "response.create"})
            opening = await client.until(wire_name(Dialect.GA, OutputEvent.AUDIO_DELTA))
            assert "response.created" in types(opening)
            await client.send({"type": "response.cancel"})
            done = (await client.until("response.done"))[-1]
            assert done["response"]["status"] == "cancelled"
            await client.send({"type": "response.cancel"})
            assert (await client.recv())["error"]["code"] == "response_cancel_not_active"

            await server.stop()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            await asyncio.wait_for(session.closed.wait(), 5)
    finally:
        await server.stop()
    await server.stop()


async def test_run_local_server_serves_until_cancelled() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with capture_logs() as logs:
        task = asyncio.create_task(run_local_server("127.0.0.1", port))
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        for _ in range(100):
            if any(entry.get("url") == url for entry in logs):
                break
            await asyncio.sleep(0.02)
        async with connect(url) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (line,) = [entry for entry in logs if entry.get("url") == url]
    assert line["beta_url"].startswith(f"ws://127.0.0.1:{port}/openai/realtime?api-version=")
