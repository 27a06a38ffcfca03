"""A Realtime session replaced mid-call before it expires, on a real SIP call.

The scripted server tells the agent its session expires a few seconds from now (as the real
API's ``expires_at`` does); the agent must open a second session at a quiet moment, give it the
conversation so far as items, switch the call's audio to it and close the first, without the
caller hearing the session-lost notice.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.audio.levels import rms_dbfs
from testbed.oracle import validate_client_event
from testbed.peers import AgentProcess, RtpPeer, engine_args, free_port, peer_call, talk_then_pause
from testbed.recording import RecordingServer

pytestmark = [pytest.mark.above_sip, pytest.mark.sipp, pytest.mark.timeout(60)]


async def test_a_session_is_replaced_before_it_expires_carrying_the_turns(
    engine: str, tmp_path: Path
) -> None:
    async with RecordingServer() as server:
        agent = AgentProcess(free_port(), ["--realtime-url", server.url, *engine_args(engine)])
        await agent.start()
        peer = await RtpPeer.open()
        try:
            call = peer_call(peer, agent, tmp_path, "PCMU", 14000)
            await agent.wait_for("call_answered", 10)
            # The greeting is spoken and written before anything else happens.
            await agent.wait_for("transcript", 10)
            first = server.sessions[0]
            greeting = next(
                e["transcript"]
                for e in first.sent
                if e["type"] == "response.output_audio_transcript.done"
            )
            # The caller said something (the synthetic backend transcribes nothing: the server
            # scripts the transcript), and the session announces its end 6 s from now.
            await first.emit(
                {"type": "conversation.item.input_audio_transcription.completed",
                 "item_id": "item_caller_1", "content_index": 0,
                 "transcript": "Where is my order?"}
            )  # fmt: skip
            await agent.wait_for("transcript", 5, count=2)
            session = {"type": "realtime", "object": "realtime.session", "id": "sess_1",
                       "expires_at": int(time.time()) + 6}  # fmt: skip
            await first.emit({"type": "session.updated", "session": session})

            (replaced,) = await agent.wait_for("realtime_session_replaced", 12)
            assert replaced["carried_turns"] == 2
            assert len(server.sessions) == 2
            second = server.sessions[1]
            for event in second.received:
                validate_client_event(second.dialect, event)
            kinds = [e["type"] for e in second.received]
            assert kinds[:3] == [
                "session.update",
                "conversation.item.create",
                "conversation.item.create",
            ]
            carried = [
                (e["item"]["role"], e["item"]["content"][0]["text"]) for e in second.received[1:3]
            ]
            assert carried == [("assistant", greeting), ("user", "Where is my order?")]
            await asyncio.wait_for(first.closed.wait(), 5)  # the old session is let go

            # The call goes on on the new session: the caller's voice reaches it.
            peer.talk(talk_then_pause(1.0, 0.2), "PCMU")
            deadline = time.monotonic() + 5
            while len(second.input_audio) < 8000 * 2:
                assert time.monotonic() < deadline, "caller audio never reached the new session"
                await asyncio.sleep(0.05)
            assert rms_dbfs(bytes(second.input_audio)) > -40
            result = await call
            assert result.returncode == 0, result.output[-3000:]
            assert not agent.events("realtime_session_lost")  # no notice: nothing was heard
        finally:
            peer.close()
            assert await agent.stop() == 0
