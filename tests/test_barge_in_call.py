"""Barge-in end to end: a real SIP call, the agent talking, the server saying the caller spoke.

The local server streams a long reply; the test injects ``input_audio_buffer.speech_started``
and then reads the caller's received RTP to see when agent audio stopped and how much of it
was heard, and compares that with the ``conversation.item.truncate`` the agent sent.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.audio.levels import rms_dbfs
from testbed.oracle import validate_client_event
from testbed.peers import AgentProcess, RtpPeer, engine_args, free_port, peer_call
from testbed.recording import RecordingServer
from testbed.responders import tone_responder

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(90)]

_REPLY_S = 12.0
_LONG_ANSWER = "This is a long answer that the caller will interrupt."


def _agent_audio_packets(peer: RtpPeer) -> list[tuple[float, bool]]:
    """(arrival time, carries agent audio) for each RTP packet the caller received."""
    out = []
    for packet in peer.packets:
        pcm = peer.decode(packet)
        out.append((packet.arrival, rms_dbfs(pcm) > -42))
    return out


@pytest.mark.exclusive  # the truncate within 40 ms of what was heard
async def test_barge_in_stops_audio_and_truncates_to_what_was_heard(
    engine: str, tmp_path: Path
) -> None:
    async with RecordingServer(responder_factory=tone_responder(_REPLY_S, _LONG_ANSWER)) as server:
        agent = AgentProcess(free_port(), ["--realtime-url", server.url, *engine_args(engine)])
        await agent.start()
        peer = await RtpPeer.open()
        try:
            call = peer_call(peer, agent, tmp_path, "PCMU", 5000)
            # The greeting (response.create on answer) plays the long reply; let 1.5 s of it
            # reach the caller.
            deadline = time.monotonic() + 10
            while sum(heard for _, heard in _agent_audio_packets(peer)) < 75:
                assert time.monotonic() < deadline, "agent audio never reached the caller"
                await asyncio.sleep(0.02)
            session = server.sessions[0]
            # A non-fatal server error is logged with its code and the client event it refers
            # to, and the call goes on.
            await session.emit(
                {
                    "type": "error",
                    "event_id": "event_err_1",
                    "error": {
                        "type": "invalid_request_error",
                        "code": "invalid_value",
                        "message": "Invalid value for 'voice'.",
                        "param": "session.voice",
                        "event_id": "client_evt_7",
                    },
                }
            )
            # A caller line, as the server's input transcription reports it.
            await session.emit(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "event_id": "event_tr_1",
                    "item_id": "item_caller_0",
                    "content_index": 0,
                    "transcript": "What are your opening hours?",
                    "usage": {"type": "duration", "seconds": 1.2},
                }
            )
            sent_at = time.monotonic()
            await session.emit(
                {
                    "type": "input_audio_buffer.speech_started",
                    "event_id": "event_barge_in",
                    "audio_start_ms": 1500,
                    "item_id": "item_caller_1",
                }
            )
            await asyncio.sleep(1.0)
            packets = _agent_audio_packets(peer)
            last_agent_audio = max(t for t, heard in packets if heard)
            assert last_agent_audio - sent_at <= 0.040, (
                f"agent audio went on {1000 * (last_agent_audio - sent_at):.0f} ms after the event"
            )
            assert not any(heard for t, heard in packets if t > sent_at + 0.060)

            truncates = [e for e in session.received if e["type"] == "conversation.item.truncate"]
            assert len(truncates) == 1
            truncate = truncates[0]
            validate_client_event("ga", truncate)
            heard_ms = 20 * sum(heard for _, heard in packets)
            assert abs(truncate["audio_end_ms"] - heard_ms) <= 40, (truncate, heard_ms)
            # The server streamed more than was heard: the cut was real.
            assert truncate["audio_end_ms"] < _REPLY_S * 1000 - 1000
            assert (await call).returncode == 0
            error = (await agent.wait_for("realtime_error", 2))[0]
            assert (error["code"], error["event_id"]) == ("invalid_value", "client_evt_7")
            line = (await agent.wait_for("barge_in", 2))[0]
            assert line["audio_end_ms"] == truncate["audio_end_ms"]
            await agent.wait_for("call_finished", 5)
        finally:
            peer.close()
            assert await agent.stop() == 0
        # The transcript has the caller's line and marks the agent's line as interrupted, cut
        # to what was heard.
        (transcript,) = agent.transcripts()
        caller_lines = [line for line in transcript if line["role"] == "caller"]
        assert [line["text"] for line in caller_lines] == ["What are your opening hours?"]
        agent_lines = [line for line in transcript if line["role"] == "agent"]
        assert len(agent_lines) == 1
        cut = agent_lines[0]
        assert cut["interrupted"] is True
        assert cut["heard_ms"] == truncate["audio_end_ms"]
        full = _LONG_ANSWER
        assert full.startswith(cut["text"]) and len(cut["text"]) < len(full)
        assert [line["kind"] for line in transcript if line["role"] == "event"] == [
            "call_start",
            "call_end",
        ]


@pytest.mark.above_sip
async def test_malformed_server_events_are_logged_once_and_the_call_goes_on(
    engine: str, tmp_path: Path
) -> None:
    async with RecordingServer() as server:
        agent = AgentProcess(free_port(), ["--realtime-url", server.url, *engine_args(engine)])
        await agent.start()
        peer = await RtpPeer.open()
        try:
            call = peer_call(peer, agent, tmp_path, "PCMA", 3000)
            await agent.wait_for("call_answered", 10)
            session = server.sessions[0]
            for bad in (
                {"type": "response.created"},  # no response object
                {"type": "response.created", "response": None},
                {"type": "response.output_audio.delta", "item_id": "i", "delta": "@@not base64"},
                {"type": "conversation.item.input_audio_transcription.completed"},
                {"type": "some.future.event", "payload": [1, 2, 3]},
            ):
                await session.emit(bad)
            # The greeting still plays and the call runs to the caller's BYE.
            assert (await call).returncode == 0
            await agent.wait_for("call_finished", 5)
            assert rms_dbfs(peer.audio()) > -37
            malformed = agent.events("malformed_server_event")
            assert sorted(e["type"] for e in malformed) == [
                "conversation.item.input_audio_transcription.completed",
                "response.created",
                "response.output_audio.delta",
            ]
            bad_audio = [e for e in malformed if e["type"] == "response.output_audio.delta"]
            assert "base64" in bad_audio[0]["error"]
            assert not agent.events("realtime_session_lost")
        finally:
            peer.close()
            assert await agent.stop() == 0
