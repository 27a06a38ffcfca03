"""The WebRTC transport end to end: a real SIP call, the agent reaching the local server's
Realtime GA session over WebRTC (SDP over HTTP, Opus tracks, the ``oai-events`` channel).

The caller's audio must reach the model's side through the agent's track, the reply must
reach the caller from the server's track, a barge-in must silence the line within 60 ms of
the server's signal, a tool call must work (``end_call`` after the goodbye was heard), and
every event on the data channel, both ways, must validate against the ``openai`` models.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.audio.levels import rms_dbfs, tone
from agent.local.webrtc.tracked import TrackedRealtime
from testbed.oracle import validate_client_event, validate_server_event
from testbed.peers import AgentProcess, RtpPeer, engine_args, free_port, peer_call, run_sipp
from testbed.recording import RecordedSession, RecordingServer, stamped
from testbed.responders import tone_responder

# The transport to the model is above the SIP edge: once, on the default engine.
pytestmark = [pytest.mark.above_sip, pytest.mark.sipp, pytest.mark.timeout(90)]

_LONG_ANSWER = "This is a long answer that the caller will interrupt."


def _agent(server: RecordingServer, engine: str, *extra: str) -> AgentProcess:
    assert server.calls_url is not None
    return AgentProcess(
        free_port(),
        [
            "--realtime-url",
            server.url,
            "--webrtc-url",
            server.calls_url,
            "--transport",
            "webrtc",
            *engine_args(engine),
            *extra,
        ],
    )


async def _until(check: Callable[[], Any], what: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _heard(peer: RtpPeer) -> list[tuple[float, bool]]:
    return [(p.arrival, rms_dbfs(peer.decode(p)) > -42) for p in peer.packets]


def _check_channel_events(session: RecordedSession) -> None:
    for event in session.received:
        validate_client_event("ga", event)
    for event in session.sent:
        validate_server_event("ga", event)


def _tracked(session: RecordedSession) -> TrackedRealtime:
    assert isinstance(session.protocol, TrackedRealtime)
    return session.protocol


@pytest.mark.exclusive  # the truncate within 60 ms of what was heard
async def test_a_call_over_webrtc_talks_both_ways_and_barge_in_cuts_within_60_ms(
    engine: str, tmp_path: Path
) -> None:
    async with RecordingServer(
        responder_factory=tone_responder(12.0, _LONG_ANSWER), webrtc=True
    ) as server:
        agent = _agent(server, engine)
        await agent.start()
        peer = await RtpPeer.open()
        try:
            listening = (await agent.wait_for("agent_listening", 5))[0]
            assert listening["transport"] == "webrtc"
            call = peer_call(peer, agent, tmp_path, "PCMU", 6000)
            await _until(lambda: server.sessions, "the WebRTC session")
            session = server.sessions[0]
            tracked = _tracked(session)
            await agent.wait_for("call_answered", 10)
            # The greeting's reply reaches the caller: 1.5 s of it.
            await _until(lambda: sum(h for _, h in _heard(peer)) >= 75, "agent audio at the caller")
            # The server's VAD hears the caller: speech_started, and it clears its playout.
            speech = stamped(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": 1500,
                    "item_id": "item_caller_1",
                }
            )
            sent_at = time.monotonic()
            session.send([speech, *tracked.clear_playout()])
            await asyncio.sleep(1.0)
            packets = _heard(peer)
            last = max(t for t, h in packets if h)
            # Then the caller talks: a 1 kHz tone must come out of the model side's track.
            peer.talk(tone(1000, 600, 8000, -12.0), "PCMU")
            await _until(
                lambda: (
                    len(tracked.caller_audio) > 24000 * 2 // 2
                    and rms_dbfs(bytes(tracked.caller_audio)) > -40
                ),
                "the caller's audio at the model's side",
            )
            assert last - sent_at <= 0.060, f"agent audio went on {1000 * (last - sent_at):.0f} ms"
            truncates = [e for e in session.received if e["type"] == "conversation.item.truncate"]
            assert len(truncates) == 1
            heard_ms = 20 * sum(h for _, h in packets)
            assert abs(truncates[0]["audio_end_ms"] - heard_ms) <= 60, (truncates, heard_ms)
            assert (await call).returncode == 0
            await agent.wait_for("call_finished", 5)
            kinds = [e["type"] for e in session.sent]
            assert "output_audio_buffer.started" in kinds
            assert "output_audio_buffer.cleared" in kinds
            # Audio never went on the channel: it rode the tracks.
            assert "response.output_audio.delta" not in kinds
            assert not [e for e in session.received if e["type"] == "input_audio_buffer.append"]
            _check_channel_events(session)
        finally:
            peer.close()
            assert await agent.stop() == 0


async def test_end_call_over_webrtc_hangs_up_after_the_goodbye_was_heard(
    engine: str, tmp_path: Path
) -> None:
    profile = tmp_path / "tools.toml"
    profile.write_text('[agent]\ngreeting = "Say hello."\n\n[tools]\nbuiltin = ["end_call"]\n')
    reply_s = 1.6
    async with RecordingServer(
        responder_factory=tone_responder(reply_s, _LONG_ANSWER), webrtc=True
    ) as server:
        agent = _agent(server, engine, "--config", str(profile))
        await agent.start()
        peer = await RtpPeer.open()
        try:
            call = asyncio.create_task(
                run_sipp("uac_peer_wait_bye.xml", agent.sip_port, keys=peer.sipp_keys())
            )
            await _until(lambda: server.sessions, "the WebRTC session")
            session = server.sessions[0]
            created = await _until(
                lambda: [e for e in session.sent if e["type"] == "response.created"],
                "the greeting response",
            )
            response_id = created[-1]["response"]["id"]
            ids = {"response_id": response_id, "item_id": "item_call_end", "output_index": 1}
            item = {
                "id": "item_call_end",
                "type": "function_call",
                "object": "realtime.item",
                "status": "completed",
                "call_id": "call_end",
                "name": "end_call",
                "arguments": json.dumps({"reason": "caller is done"}),
            }
            await session.emit({"type": "response.output_item.added", **ids, "item": item})
            await session.emit(
                {
                    "type": "response.function_call_arguments.done",
                    **ids,
                    "call_id": "call_end",
                    "name": "end_call",
                    "arguments": item["arguments"],
                }
            )
            result = await call
            assert result.returncode == 0, result.output[-2000:]  # the caller got a BYE
            # The whole goodbye, paced by the server's track, was heard before the BYE.
            loud_ms = 20 * sum(h for _, h in _heard(peer))
            assert loud_ms >= reply_s * 1000 - 100, loud_ms
            line = (await agent.wait_for("tool_call", 5))[0]
            assert line["tool"] == "end_call" and line["outcome"] == "ok"
            # The output goes on the channel once the hang-up is done, so it can follow the
            # BYE; the connection's close lets it arrive.
            outputs = await _until(
                lambda: [
                    e
                    for e in session.received
                    if (e.get("item") or {}).get("type") == "function_call_output"
                ],
                "the end_call output",
                5.0,
            )
            assert outputs[0]["item"]["call_id"] == "call_end"
            finished = (await agent.wait_for("call_finished", 5))[0]
            assert (finished["ended_by"], finished["reason"]) == (
                "agent",
                "end_call: caller is done",
            )
            _check_channel_events(session)
        finally:
            peer.close()
            assert await agent.stop() == 0
