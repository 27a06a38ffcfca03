"""The agent's own GPT-Live and Responses messages against the local server's protocols.

The agent's Live adapter (``agent.live.adapter``) and delegation wire
(``agent.live.responses_wire``) talk, in memory and on a fake clock, to ``LiveProtocol`` and
``ResponsesProtocol`` backed by the shipped script: what the adapter sends is accepted, what
the server sends parses into the bridge's events, and a delegated transfer runs the whole
round trip (delegation, the backend's function call, its output, the result spoken). Every
event validates against the ``openai`` models both ways.
"""

from __future__ import annotations

import json
from typing import Any

from agent.audio.g711 import ulaw_encode
from agent.bridge.events import (
    CallerHeard,
    CallerTranscript,
    DelegationRequested,
    ServerError,
    ServerEvent,
    SessionClosed,
    SessionReady,
    TranscriptDelta,
)
from agent.bridge.requests import (
    AppendAudio,
    ClientRequest,
    CloseSession,
    ConfigureSession,
    CreateResponse,
    DelegationResult,
    SessionSpec,
    Turn,
)
from agent.live.adapter import LiveAdapter
from agent.live.responses_wire import (
    FunctionCall,
    ResponseReader,
    call_items,
    history_items,
    response_create,
)
from agent.local.live.protocol import LiveProtocol
from agent.local.responses_api.protocol import ResponsesProtocol
from testbed.oracle import LIVE, RESPONSES, validate_client_event, validate_server_event
from testbed.scripted import scripted_backend
from tests.local_helpers import silence, tone

TRANSFER = {
    "type": "function",
    "name": "transfer_call",
    "description": "Put the caller through to a colleague.",
    "parameters": {
        "type": "object",
        "properties": {"destination": {"type": "string", "enum": ["sales", "support"]}},
        "required": ["destination"],
    },
}
FRAME_MS = 20


class Call:
    """The agent's adapter wired to a local Live session on a fake clock."""

    def __init__(self, heard: str) -> None:
        backend, _ = scripted_backend(heard)
        self.backend = backend
        self.now = 100.0
        self.adapter = LiveAdapter()
        self.protocol = LiveProtocol(
            responder=backend.responder_factory(),
            transcriber=backend.transcriber,
            tools=backend.delegable_tools,
        )
        self.events: list[ServerEvent] = []

    def request(self, request: ClientRequest) -> list[ServerEvent]:
        out: list[ServerEvent] = []
        for message in self.adapter.encode(request):
            validate_client_event(LIVE, json.loads(message))
            out += self._parse(self.protocol.receive(message, self.now))
        return out

    def advance(self, seconds: float) -> list[ServerEvent]:
        out: list[ServerEvent] = []
        for _ in range(round(seconds * 100)):
            self.now += 0.01
            out += self._parse(self.protocol.poll(self.now))
        return out

    def caller_says(self, speech_ms: int) -> list[ServerEvent]:
        """A turn in mu-law at 8 kHz, a frame per 20 ms of the clock."""
        samples = [tone(speech_ms, 8000), silence(700, 8000)]
        pcm = ulaw_encode(b"".join(s.astype("<i2").tobytes() for s in samples))
        step = 8000 * FRAME_MS // 1000
        out: list[ServerEvent] = []
        for start in range(0, len(pcm), step):
            self.now += FRAME_MS / 1000
            out += self.request(AppendAudio(pcm[start : start + step]))
        return out

    def _parse(self, events: list[dict[str, Any]]) -> list[ServerEvent]:
        parsed: list[ServerEvent] = []
        for event in events:
            validate_server_event(LIVE, event)
            parsed += self.adapter.parse(json.dumps(event))
        self.events += parsed
        return parsed


def said(events: list[ServerEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TranscriptDelta))


def ask(protocol: ResponsesProtocol, event: dict[str, Any]) -> ResponseReader:
    validate_client_event(RESPONSES, event)
    reader = ResponseReader()
    for reply in protocol.receive(json.dumps(event), 0.0):
        validate_server_event(RESPONSES, reply)
        reader.feed(json.dumps(reply))
    assert reader.done and reader.error is None
    return reader


def test_a_delegated_transfer_runs_the_whole_round_trip() -> None:
    call = Call("can I speak to a person please")
    history = (Turn("user", "Hello?"), Turn("assistant", "Hello! How can I help you?"))
    spec = SessionSpec(
        instructions="Be brief.",
        voice="marin",
        codec="pcmu",
        model="gpt-live-1",
        tools=[TRANSFER],
        history=history,
    )
    ready = call.request(ConfigureSession(spec))
    assert [type(e) for e in ready] == [SessionReady]
    assert [m.text for m in call.protocol.history] == ["Hello?", "Hello! How can I help you?"]

    greeting = call.request(CreateResponse(instructions="Greet the caller.")) + call.advance(4.0)
    assert said(greeting) == "Thank you for calling. How can I help you today?"

    turn = call.caller_says(1200) + call.advance(1.0)
    assert any(isinstance(e, CallerHeard) for e in turn)
    (requested,) = [e for e in turn if isinstance(e, DelegationRequested)]
    # The delegation came while the caller's words were the turn's: the request has them.
    assert requested.caller_text == "can I speak to a person please"

    # The delegation worker's rounds, as the agent sends them.
    backend = ResponsesProtocol(brain=call.backend.brain)
    items = history_items(history, requested.caller_text)
    first = ask(backend, response_create("gpt-5.5", "Do the work.", items, [TRANSFER]))
    (fc,) = first.calls
    assert (fc.name, json.loads(fc.arguments)) == ("transfer_call", {"destination": "sales"})
    items += call_items(FunctionCall(fc.call_id, fc.name, fc.arguments), '{"ok": true}')
    second = ask(backend, response_create("gpt-5.5", "Do the work.", items, [TRANSFER]))
    assert (second.calls, second.text) == ([], "Transferring you now.")

    # Meanwhile the voice acknowledged the task in the script's words.
    acknowledged = said(turn + call.advance(3.0))
    assert acknowledged.strip() == "Let me put you through to a colleague."

    result = call.request(DelegationResult(requested.delegation_id, second.text))
    result += call.advance(4.0)
    assert said(result).strip() == "Transferring you now."
    assert not [e for e in call.events if isinstance(e, ServerError)]
    transcripts = [e.text for e in call.events if isinstance(e, CallerTranscript)]
    assert transcripts == ["can I speak to a person please"]

    closed = call.request(CloseSession())
    assert [e.reason for e in closed if isinstance(e, SessionClosed)] == ["close_requested"]
