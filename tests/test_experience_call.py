"""The call experience on real SIP calls: the silence and length limits end calls as the
profile says (the agent's BYE at the caller, the reason in the call_end record), and a slow
custom tool fills the wait with the thinking sound, which stops when its result comes.

SIPp signals, an RTP peer is the caller's media, the local realtime server (tone replies)
is the model; what the agent asked of the model is read from the server's record.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.audio.levels import rms_dbfs
from agent.bridge.limits import SILENCE_GOODBYE, STILL_THERE, TIME_GOODBYE
from agent.realtime.dialect import Dialect
from testbed.oracle import validate_client_event
from testbed.peers import AgentProcess, RtpPeer, free_port, run_sipp
from testbed.recording import RecordedSession, RecordingServer
from testbed.responders import tone_responder
from tests.test_tools_call import _await_output, _model_calls, _session, _until

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(60)]


async def _agent(server: RecordingServer, tmp_path: Path, profile: str) -> AgentProcess:
    path = tmp_path / "experience.toml"
    path.write_text(f'[agent]\ngreeting = "Say hello."\n{profile}')
    agent = AgentProcess(free_port(), ["--realtime-url", server.url, "--config", str(path)])
    await agent.start()
    return agent


def _asked(session: RecordedSession) -> list[str | None]:
    return [
        event["response"].get("instructions")
        for event in session.received
        if event["type"] == "response.create"
    ]


async def _call_end(agent: AgentProcess) -> dict[str, object]:
    await agent.wait_for("call_finished", 5)
    end = agent.transcripts()[0][-1]
    assert end["kind"] == "call_end"
    return end


async def test_silence_asks_once_then_the_agent_says_goodbye_and_hangs_up(
    tmp_path: Path,
) -> None:
    async with RecordingServer(responder_factory=tone_responder(0.6)) as server:
        agent = await _agent(server, tmp_path, "silence_hangup_s = 2.0\n")
        peer = await RtpPeer.open()
        try:
            started = time.monotonic()
            result = await run_sipp("uac_peer_wait_bye.xml", agent.sip_port, keys=peer.sipp_keys())
            assert result.returncode == 0, result.output[-2000:]  # the agent's BYE came
            # Greeting 0.6 s, 2 s silent, the question 0.6 s, 2 s silent, the goodbye 0.6 s.
            assert 5.5 < time.monotonic() - started < 12
            session = server.sessions[0]
            assert _asked(session) == ["Say hello.", STILL_THERE, SILENCE_GOODBYE]
            for event in session.received:
                validate_client_event(Dialect.GA, event)
            end = await _call_end(agent)
            assert (end["ended_by"], end["reason"]) == (
                "agent",
                "silence: no caller speech for 4 s",
            )
            # The goodbye was heard before the BYE: three replies' worth of tone.
            loud = sum(rms_dbfs(peer.decode(p)) > -30 for p in peer.packets)
            assert loud * 20 >= 3 * 600 - 100
        finally:
            peer.close()
            assert await agent.stop() == 0


async def test_max_duration_says_goodbye_and_hangs_up_at_the_limit(tmp_path: Path) -> None:
    # Replies longer than the call: the goodbye waits for the greeting, and the hard limit
    # ends the call while it is still being said.
    async with RecordingServer(responder_factory=tone_responder(2.5)) as server:
        profile = "max_call_s = 4.0\nmax_call_goodbye_s = 2.0\n"
        agent = await _agent(server, tmp_path, profile)
        peer = await RtpPeer.open()
        try:
            result = await run_sipp("uac_peer_wait_bye.xml", agent.sip_port, keys=peer.sipp_keys())
            assert result.returncode == 0, result.output[-2000:]
            session = server.sessions[0]
            assert _asked(session) == ["Say hello.", TIME_GOODBYE]
            end = await _call_end(agent)
            assert (end["ended_by"], end["reason"]) == ("agent", "max_call_s: the 4 s limit")
            # From the first agent packet to the last: the 4 s of the call, not more.
            spoken = [p.arrival for p in peer.packets if rms_dbfs(peer.decode(p)) > -30]
            assert 3.3 < spoken[-1] - spoken[0] < 4.3
        finally:
            peer.close()
            assert await agent.stop() == 0


_SLOW_TOOLS = '''
import asyncio


async def slow_lookup(order_id: str) -> str:
    """Look an order up in a slow back office.

    Args:
        order_id: The order number.
    """
    await asyncio.sleep(2.5)
    return f"Order {order_id} is on its way."
'''


async def test_a_slow_tool_gets_the_thinking_sound_until_its_result(tmp_path: Path) -> None:
    (tmp_path / "slow_tools.py").write_text(_SLOW_TOOLS)
    profile = (
        f'[tools]\npython_path = ["{tmp_path}"]\nfiller = "tone"\nfiller_after_ms = 500\n'
        '[[tools.custom]]\nfunction = "slow_tools:slow_lookup"\n'
    )
    async with RecordingServer(responder_factory=tone_responder(0.6)) as server:
        agent = await _agent(server, tmp_path, profile)
        peer = await RtpPeer.open()
        try:
            call = asyncio.create_task(
                run_sipp(
                    "uac_peer.xml",
                    agent.sip_port,
                    keys=peer.sipp_keys(),
                    fill={"call_ms": "5000"},
                    workdir=tmp_path,
                )
            )
            session = await _session(server)
            await _model_calls(session, "slow_lookup", {"order_id": "A1"}, "slow1")
            called = time.monotonic()
            assert await _await_output(session, "slow1") == "Order A1 is on its way."
            result_at = time.monotonic()
            assert result_at - called > 2.0
            await _until(lambda: len(_asked(session)) >= 2, "the response to the result")
            result = await call
            assert result.returncode == 0, result.output[-2000:]
            # The filler is soft (the replies are about -14 dBFS, silence far below -60).
            soft = [p.arrival for p in peer.packets if -48 < rms_dbfs(peer.decode(p)) < -26]
            assert len(soft) >= 8, f"the caller heard no filler ({len(soft)} soft packets)"
            assert soft[0] - called > 0.4  # not before filler_after_ms (nor over the greeting)
            assert soft[-1] < result_at + 0.1  # stopped when the result came
            end = await _call_end(agent)
            assert end["tool_fillers"] == 1
            for event in session.received:
                validate_client_event(Dialect.GA, event)
        finally:
            peer.close()
            assert await agent.stop() == 0
