"""The local server's GPT-Live and Responses WebSocket endpoints over real WebSockets.

The caller streams in real time (a 20 ms frame every 20 ms, silence between turns, as a
phone line does); every event either side sends validates against the ``openai`` models
(``testbed.oracle``). The recorder's send times (``RecordedSession.sent_at``) are what
barge-in timing is measured from.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK, InvalidStatus

from agent.audio.g711 import ulaw_decode
from agent.audio.levels import rms_dbfs
from agent.local.backend import Backend
from agent.local.replies import Reply, ReplyRequest
from agent.local.server import LIVE_PATHS, RESPONSES_PATHS
from testbed.oracle import LIVE, RESPONSES, validate_client_event, validate_server_event
from testbed.recording import RecordedSession, RecordingServer
from testbed.scripted import HeardTranscriber, scripted_backend
from tests.local_helpers import silence, tone, wire_audio

pytestmark = pytest.mark.timeout(30)

FRAME_MS = 20
PCMU = {"type": "audio/pcmu", "rate": 8000}


class LiveClient:
    """A GPT-Live client that validates everything it sends and receives, and can stream
    audio in real time in the background."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self._pending: list[np.ndarray] = []
        self._streamer: asyncio.Task[None] | None = None

    async def send(self, event: dict[str, Any]) -> None:
        validate_client_event(LIVE, event)
        await self.ws.send(json.dumps(event))

    async def recv(self) -> dict[str, Any]:
        event = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        validate_server_event(LIVE, event)
        self.received.append(event)
        return event

    async def until(self, kind: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while not events or events[-1]["type"] != kind:
            events.append(await self.recv())
        return events

    async def start(self, **session: Any) -> dict[str, Any]:
        await self.send({"type": "session.start", "session": {"model": "gpt-live-1", **session}})
        (started,) = await self.until("session.started")
        return started

    def say(self, samples: np.ndarray) -> None:
        """Stream ``samples`` next (8 kHz, mu-law on the wire); silence when there is none."""
        self._pending.append(samples)

    @contextlib.asynccontextmanager
    async def streaming(self) -> AsyncIterator[None]:
        self._streamer = asyncio.create_task(self._stream())
        try:
            yield
        finally:
            self._streamer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._streamer

    async def _stream(self) -> None:
        step = 8000 * FRAME_MS // 1000
        due = time.monotonic()
        buffered = np.zeros(0, dtype=np.int16)
        while True:
            if len(buffered) < step and self._pending:
                buffered = np.concatenate([buffered, *self._pending])
                self._pending.clear()
            frame, buffered = buffered[:step], buffered[step:]
            if len(frame) < step:
                frame = np.concatenate([frame, silence(FRAME_MS, 8000)[len(frame) :]])
            audio = wire_audio(frame, "pcmu")
            await self.send({"type": "session.input_audio.append", "audio": audio})
            due += FRAME_MS / 1000
            await asyncio.sleep(max(due - time.monotonic(), 0))


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def said(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in of_type(events, "session.output_transcript.delta"))


def audio_of(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"]) for e in of_type(events, "session.output_audio.delta")
    )


def spoken_turn(speech_ms: int = 800) -> np.ndarray:
    """A caller's turn at 8 kHz: speech, then the silence that ends it."""
    return np.concatenate([tone(speech_ms, 8000), silence(600, 8000)])


async def test_a_call_on_live_hears_the_caller_delegates_speaks_the_commentary_and_closes() -> None:
    backend, voices = scripted_backend("transfer me to a human please")
    async with RecordingServer(backend=backend, live_lead_ms=200) as server:
        assert server.live_url == f"ws://127.0.0.1:{server.port}/v1/live/sessions"
        async with connect(server.live_url) as ws:
            client = LiveClient(ws)
            started = await client.start(audio={"format": PCMU})
            assert started["session"]["audio"]["format"] == PCMU
            async with client.streaming():
                client.say(spoken_turn())
                heard = await client.until("session.delegation.created")
                delegation = heard[-1]["delegation"]
                assert "transfer me to a human please" in "".join(
                    e["delta"] for e in of_type(heard, "session.input_transcript.delta")
                )
                # The acknowledgement (the intent's reply) follows; then the result.
                ack = await client.until("session.output_transcript.delta")
                while said(ack) != "Let me put you through to a colleague.":
                    ack.append(await client.recv())
                await client.send(
                    {
                        "type": "session.commentary.append",
                        "delegation_id": delegation["id"],
                        "content": "Transferring you now.",
                    }
                )
                result: list[dict[str, Any]] = []
                while said(result).strip() != "Transferring you now.":
                    result.append(await client.recv())
            mulaw = audio_of(client.received)
            assert rms_dbfs(ulaw_decode(mulaw)) > -30  # audible, and mu-law at 8 kHz
            await client.send({"type": "session.close", "event_id": "bye"})
            closed = (await client.until("session.closed"))[-1]
            assert (closed["reason"], closed["client_event_id"]) == ("close_requested", "bye")
            # The server closes the connection normally once session.closed is out.
            with pytest.raises(ConnectionClosedOK):
                await asyncio.wait_for(ws.recv(), 5)
        (session,) = server.sessions
        await asyncio.wait_for(session.closed.wait(), 5)
    assert voices[0].requests[-1].say == "Transferring you now."
    assert session.input_rate == 8000
    assert len(session.input_audio) / 2 / 8000 > 0.8  # the caller's audio, decoded
    # Every event went out, each with its send time, in order.
    assert len(session.sent_at) == len(session.sent)
    assert session.sent_at == sorted(session.sent_at)
    assert [e["type"] for _, e in session.sent_log()][-1] == "session.closed"


@pytest.mark.parametrize("path", LIVE_PATHS)
async def test_every_live_path_starts_a_session(path: str) -> None:
    async with RecordingServer() as server:
        async with connect(f"ws://127.0.0.1:{server.port}{path}") as ws:
            client = LiveClient(ws)
            # A bad session.start is an error; the connection stays open for a good one.
            await client.send({"type": "session.start", "session": {"model": "gpt-live-1"}})
            await ws.send(json.dumps({"type": "session.start", "session": {"modle": "x"}}))
            started = (await client.until("session.started"))[-1]
            error = (await client.until("error"))[-1]
            assert error["error"]["code"] == "session_already_started"
            assert started["session"]["audio"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert server.sessions[0].dialect is None


async def test_a_bad_session_start_is_an_error_event() -> None:
    async with RecordingServer() as server, connect(server.live_url) as ws:
        client = LiveClient(ws)
        await ws.send(json.dumps({"type": "session.start", "session": {"modle": "gpt-live-1"}}))
        error = await client.recv()
        assert (error["type"], error["error"]["code"]) == ("error", "unknown_parameter")
        assert (await client.start())["session"]["model"] == "gpt-live-1"


async def test_live_takes_no_query_parameters() -> None:
    async with RecordingServer() as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{server.live_url}?model=gpt-live-1"):
                pass
        assert refused.value.response.status_code == 400


class LongReply:
    """A 4 s reply: long enough to barge in on."""

    def reply(self, request: ReplyRequest) -> Reply:
        return Reply("A long reply.", iter([tone(4000, dbfs=-13).astype("<i2").tobytes()]))


def written(session: RecordedSession, kind: str) -> list[float]:
    return [at for at, event in session.sent_log() if event["type"] == kind]


async def test_barge_in_stops_the_agent_before_the_caller_is_heard() -> None:
    backend = Backend("long", LongReply, transcriber=HeardTranscriber("wait a moment"))
    async with RecordingServer(backend=backend, live_lead_ms=200) as server:
        async with connect(server.live_url) as ws:
            client = LiveClient(ws)
            await client.start(audio={"format": PCMU})
            async with client.streaming():
                client.say(spoken_turn())
                await client.until("session.output_audio.delta")
                await asyncio.sleep(0.6)  # the agent talks a while
                barged_at = time.monotonic()
                client.say(spoken_turn(1000))
                while time.monotonic() < barged_at + 1.2:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(client.recv(), 0.1)
        (session,) = server.sessions
    audio = written(session, "session.output_audio.delta")
    heard = [at for at in written(session, "session.input_transcript.delta") if at > barged_at]
    assert heard, "the barging caller was never transcribed"
    # The agent's audio stopped when the caller's speech started, before the server's first
    # transcript delta of the turn (the client's barge-in signal): none of the reply goes out
    # after it (the next reply waits for the end of the turn, a second later), and less than
    # the reply's 4 s went out before it.
    assert [at for at in audio if heard[0] <= at < heard[0] + 0.3] == []
    before = [at for at in audio if at < heard[0]]
    assert 0 < len(before) * 40 < 4000 - 1000


class ResponsesClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def create(self, **fields: Any) -> list[dict[str, Any]]:
        event = {"type": "response.create", "model": "gpt-5.5", "store": False, **fields}
        validate_client_event(RESPONSES, event)
        await self.ws.send(json.dumps(event))
        events: list[dict[str, Any]] = []
        while not events or events[-1]["type"] not in ("response.completed", "error"):
            events.append(json.loads(await asyncio.wait_for(self.ws.recv(), 10)))
            validate_server_event(RESPONSES, events[-1])
        return events


TRANSFER = {
    "type": "function",
    "name": "transfer_call",
    "description": "Transfer the caller.",
    "parameters": {"type": "object", "properties": {"destination": {"type": "string"}}},
}


@pytest.mark.parametrize("path", RESPONSES_PATHS)
async def test_responses_websocket_mode_runs_a_function_call_round_trip(path: str) -> None:
    backend, _ = scripted_backend("")
    async with RecordingServer(backend=backend) as server:
        assert server.responses_url == f"ws://127.0.0.1:{server.port}/v1/responses"
        async with connect(f"ws://127.0.0.1:{server.port}{path}") as ws:
            client = ResponsesClient(ws)
            history = [{"role": "user", "content": "Can I talk to a person?"}]
            first = await client.create(input=history, tools=[TRANSFER], tool_choice="auto")
            (call,) = first[-1]["response"]["output"]
            assert (call["type"], call["name"]) == ("function_call", "transfer_call")
            second = await client.create(
                previous_response_id=first[-1]["response"]["id"],
                input=[
                    {"type": "function_call_output", "call_id": call["call_id"], "output": "ok"}
                ],
                tools=[TRANSFER],
            )
            (message,) = second[-1]["response"]["output"]
            assert message["content"][0]["text"] == "Transferring you now."
        (session,) = server.sessions
        assert [event["type"] for event in session.received] == ["response.create"] * 2
