"""End to end, slow: real phone calls to `voice-agent serve` talking to the voice backend.

The caller's phrases are spoken by the backend's own text-to-speech, brought down to 8 kHz
mu-law and sent over real RTP (SIPp signals, ``LiveCaller`` carries the media). The voice
backend runs in this process (``RecordingServer`` with ``voice_backend()``), so the test
sees what it heard and said; the agent runs as its own process, as in production. Each
call ends the way a caller ends it: saying goodbye, which makes the brain call ``end_call``
and the agent hang up.

These tests take ~45 s together (models load once per process; each call is real time).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.audio.g711 import ulaw_encode
from agent.audio.levels import rms_dbfs
from agent.local.backend import voice_backend
from agent.local.brain import Brain, load_brain
from agent.local.models import voice_models
from testbed.oracle import validate_server_event
from testbed.peers import CODEC_PT, AgentProcess, RtpPeer, engine_args, free_port, run_sipp
from testbed.recording import RecordedSession, RecordingServer
from testbed.voice import PHRASES, spoken, telephone, word_error_rate

# Exclusive: the speech models (whisper, piper, silero) must keep up with real time.
pytestmark = [
    pytest.mark.above_sip,
    pytest.mark.sipp,
    pytest.mark.slow,
    pytest.mark.exclusive,
    pytest.mark.timeout(150),
]

GOODBYE = "Goodbye, and thank you."
PROFILE = """
[agent]
greeting = "Greet the caller."
input_transcription_model = "local"
[agent.turn_detection]
silence_duration_ms = 500
"""
HEARD_DBFS = -42.0
QUIET_S = 0.6


class LiveCaller(RtpPeer):
    """A caller on the line: silence until told to say something, 20 ms RTP packets."""

    def __init__(self) -> None:
        super().__init__()
        self._utterances: deque[tuple[bytes, asyncio.Future[tuple[float, float]]]] = deque()

    def start(self, codec: str = "PCMU") -> None:
        self._talker = asyncio.create_task(self._stream(codec))

    async def say(self, pcm8k: np.ndarray) -> tuple[float, float]:
        """Speak ``pcm8k`` (after anything queued); returns when it was sent (monotonic)."""
        done: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        self._utterances.append((ulaw_encode(pcm8k.astype("<i2").tobytes()), done))
        return await done

    async def _stream(self, codec: str) -> None:
        assert codec == "PCMU"
        remote = await self.remote
        assert self.transport is not None
        silent = ulaw_encode(bytes(320))
        seq, timestamp, frame, start = 1, 0, 0, time.monotonic()
        current: bytes | None = None
        offset, began = 0, 0.0
        while True:
            if current is None and self._utterances:
                current, offset, began = self._utterances[0][0], 0, time.monotonic()
            payload = silent
            if current is not None:
                payload = current[offset : offset + 160].ljust(160, b"\xff")
                offset += 160
            header = bytes([0x80, CODEC_PT[codec]]) + seq.to_bytes(2, "big")
            header += timestamp.to_bytes(4, "big") + (0x5EED).to_bytes(4, "big")
            self.transport.sendto(header + payload, remote)
            if current is not None and offset >= len(current):
                _, done = self._utterances.popleft()
                done.set_result((began, time.monotonic()))
                current = None
            seq, timestamp, frame = (seq + 1) & 0xFFFF, timestamp + 160, frame + 1
            await asyncio.sleep(max(0.0, start + frame * 0.02 - time.monotonic()))

    def heard_between(self, start: float, end: float) -> np.ndarray:
        """Agent audio (8 kHz PCM16) that arrived between two monotonic times."""
        pcm = b"".join(self.decode(p) for p in self.packets if start <= p.arrival < end)
        return np.frombuffer(pcm, dtype="<i2")

    def heard(self, since: float = 0.0) -> list[float]:
        """Arrival times of the packets carrying agent speech, from ``since`` on."""
        return [
            p.arrival
            for p in self.packets
            if p.arrival >= since and rms_dbfs(self.decode(p)) > HEARD_DBFS
        ]

    def last_heard(self) -> float:
        """When the last packet carrying agent speech arrived (0 if none)."""
        return max(self.heard(), default=0.0)


@pytest.fixture
async def voice_server() -> AsyncIterator[RecordingServer]:
    async with RecordingServer(backend=voice_backend()) as server:
        await asyncio.to_thread(voice_models().wait_loaded, 60)
        yield server


@pytest.fixture(scope="module")
def brain() -> Brain:
    return load_brain()


async def start_agent(server: RecordingServer, tmp_path: Path, engine: str) -> AgentProcess:
    profile = tmp_path / "profile.toml"
    profile.write_text(PROFILE)
    args = ["--realtime-url", server.url, "--config", str(profile), *engine_args(engine)]
    agent = AgentProcess(free_port(), args)
    await agent.start()
    return agent


async def until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def responses_done(session: RecordedSession) -> list[dict[str, Any]]:
    return [e["response"] for e in session.sent if e["type"] == "response.done"]


async def reply_heard(session: RecordedSession, caller: LiveCaller, count: int) -> dict[str, Any]:
    """Wait for the session's ``count``-th response to finish and its audio to play out."""
    await until(lambda: len(responses_done(session)) >= count, 30, f"response {count}")
    await until(lambda: time.monotonic() - caller.last_heard() > QUIET_S, 30, "the reply to end")
    return responses_done(session)[count - 1]


def said(response: dict[str, Any]) -> str:
    return " ".join(
        part.get("transcript") or ""
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
    )


def ends_the_call(response: dict[str, Any]) -> bool:
    """Whether the response's only tool call is end_call (the brain heard a goodbye)."""
    calls = [item for item in response["output"] if item["type"] == "function_call"]
    return [call["name"] for call in calls] == ["end_call"]


def intent_of(brain: Brain, text: str) -> str:
    for intent in brain.script.intents:
        if text == intent.reply:
            return intent.name
    if text.startswith("You said:"):
        return "fallback"
    return "greeting" if text == brain.script.greeting else "?"


async def open_call(
    agent: AgentProcess, server: RecordingServer, tmp_path: Path
) -> tuple[LiveCaller, RecordedSession, asyncio.Task[Any]]:
    """Dial the agent; returns the caller, its realtime session and the SIPp task."""
    caller = await LiveCaller.open()
    caller.start()
    known = len(server.sessions)
    sipp = asyncio.create_task(
        run_sipp(
            "uac_peer_wait_bye.xml",
            agent.sip_port,
            keys=caller.sipp_keys("PCMU"),
            workdir=tmp_path,
            timeout_s=120,
            extra_args=["-recv_timeout", "100s"],
        )
    )
    await until(lambda: len(server.sessions) > known, 20, "the realtime session")
    return caller, server.sessions[known], sipp


async def converse(
    agent: AgentProcess,
    server: RecordingServer,
    phrases: list[str],
    tmp_path: Path,
) -> list[tuple[str, dict[str, Any], np.ndarray]]:
    """One call: hear the greeting, say each phrase, hear each reply, then goodbye.

    Returns (phrase, the response to it, the agent audio the caller heard for it).
    """
    caller, session, sipp = await open_call(agent, server, tmp_path)
    try:
        await reply_heard(session, caller, 1)
        turns = []
        for index, phrase in enumerate([*phrases, GOODBYE], start=2):
            _, finished = await caller.say(telephone(spoken(phrase)))
            response = await reply_heard(session, caller, index)
            turns.append((phrase, response, caller.heard_between(finished, time.monotonic())))
        goodbyes = 1
        if not ends_the_call(turns[-1][1]):
            # The recogniser missed the goodbye (the test allows it one miss among the
            # phrases, counted below): a caller who is not hung up on says it again.
            _, finished = await caller.say(telephone(spoken(GOODBYE)))
            response = await reply_heard(session, caller, len(turns) + 2)
            turns.append((GOODBYE, response, caller.heard_between(finished, time.monotonic())))
            goodbyes = 2
        # Goodbye made the brain call end_call and the agent hang up (SIPp saw the BYE).
        assert ends_the_call(turns[-1][1]), f"no end_call after {goodbyes} goodbyes"
        result = await sipp
        assert result.returncode == 0, result.output[-3000:]
        await asyncio.wait_for(session.closed.wait(), 10)
        for event in session.sent:
            validate_server_event("ga", event)
        return turns
    finally:
        caller.close()
        if not sipp.done():
            sipp.cancel()


async def test_spoken_phrases_trigger_their_intents_and_replies_are_heard(
    voice_server: RecordingServer, brain: Brain, engine: str, tmp_path: Path
) -> None:
    agent = await start_agent(voice_server, tmp_path, engine)
    try:
        phrases = [p for p in PHRASES if p != GOODBYE]
        # Two calls at once, as on a line with several callers.
        (tmp_path / "second").mkdir()
        first = asyncio.create_task(converse(agent, voice_server, phrases[:2], tmp_path))
        await asyncio.sleep(1.0)
        second = asyncio.create_task(
            converse(agent, voice_server, phrases[2:], tmp_path / "second")
        )
        turns = [*await first, *await second]
    finally:
        assert await agent.stop() == 0

    expected = [PHRASES[phrase] for phrase, _, _ in turns]
    got = [intent_of(brain, said(response)) for _, response, _ in turns]
    hits = sum(e == g for e, g in zip(expected, got, strict=True))
    assert hits >= len(turns) - 1, list(zip(expected, got, strict=True))

    # Round trip: the same speech-to-text recognises what the caller heard as the reply.
    stt = voice_models().stt()
    errors = []
    for _, response, heard in turns:
        assert rms_dbfs(heard.tobytes()) > -32, "the reply did not reach the caller"
        errors.append(word_error_rate(said(response), stt.transcribe(heard.tobytes(), 8000)))
    # Shown with -s, and in the report of a failure.
    print(f"intents {list(zip(expected, got, strict=True))}; round-trip WER {errors}")
    assert max(errors) <= 0.35, errors
    assert float(np.mean(errors)) <= 0.15, errors
    # The agent asked for caller transcripts, and the local backend supplied them.
    assert agent.events("transcript")


async def test_caller_interrupts_the_reply(
    voice_server: RecordingServer, brain: Brain, engine: str, tmp_path: Path
) -> None:
    agent = await start_agent(voice_server, tmp_path, engine)
    caller, session, sipp = await open_call(agent, voice_server, tmp_path)
    try:
        await reply_heard(session, caller, 1)
        _, asked = await caller.say(telephone(spoken("What are your opening hours?")))
        # Let the caller hear a second of the answer, then talk over it.
        await until(lambda: len(caller.heard(asked)) >= 50, 20, "the answer to be heard")
        interruption = asyncio.create_task(
            caller.say(telephone(spoken("Can I speak to a real person, please?")))
        )
        await until(
            lambda: any(
                e["type"] == "input_audio_buffer.speech_started" for e in session.sent[-50:]
            ),
            10,
            "the server to hear the interruption",
        )
        heard_at = time.monotonic()
        await interruption
        transfer = await reply_heard(session, caller, 3)
        # The default profile offers no transfer: the agent says so instead of promising one.
        assert said(transfer).startswith("I am sorry, I cannot put you through to anyone")
        _, _ = await caller.say(telephone(spoken(GOODBYE)))
        result = await sipp
        assert result.returncode == 0, result.output[-3000:]
    finally:
        caller.close()
        assert await agent.stop() == 0

    hours = responses_done(session)[1]
    assert hours["status"] == "cancelled"
    assert hours["status_details"]["reason"] == "turn_detected"
    # The agent told the server how much of the answer was heard.
    truncates = [e for e in session.received if e["type"] == "conversation.item.truncate"]
    assert len(truncates) == 1
    cut = truncates[0]
    item = session.protocol.item(cut["item_id"])
    assert item is not None and item.audio_ms == cut["audio_end_ms"]
    # Nothing past what was heard stays in the history (the API drops the transcript).
    assert item.data["content"][0]["transcript"] == ""
    full_ms = len(spoken(brain.answer("opening hours", ()).text)) / 24
    assert 800 <= cut["audio_end_ms"] < full_ms - 500
    # The caller's line went quiet: no agent audio while they went on talking.
    while_talking = caller.heard_between(heard_at + 0.15, heard_at + 1.5)
    assert rms_dbfs(while_talking.tobytes()) < HEARD_DBFS
