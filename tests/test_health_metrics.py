"""The agent's HTTP listener: /healthz, /readyz and /metrics, in pieces and on real calls."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from agent.bridge.events import (
    AudioDelta,
    PlayoutStarted,
    ResponseCreated,
    SpeechStarted,
    SpeechStopped,
)
from agent.config import ConfigError
from agent.http.listener import HttpListener
from agent.http.routes import health_routes
from agent.observe.backend_probe import BackendProbe, backend_address
from agent.observe.call_metrics import CallMetrics, CallSummary, TurnClock
from agent.observe.metrics import AgentMetrics, call_outcome
from agent.observe.readiness import Readiness
from agent.sip.message import parse_request
from agent.sip.request_policy import Answer, RequestPolicy, unavailable
from testbed.http_probe import http_get, sample, scrape
from testbed.peers import AgentProcess, RtpPeer, expect_503, free_port, run_sipp, talk_then_pause
from testbed.recording import RecordingServer
from testbed.sip_probe import SipProbe, sdp_offer


def test_turn_clock_measures_each_turn_to_its_own_reply() -> None:
    clock = TurnClock()
    # A late delta of a response created before the turn ended is not the turn's reply.
    clock.event(ResponseCreated("old", None), 0)
    assert clock.event(SpeechStopped(), 1000) is None
    assert clock.event(AudioDelta("old", "i0", b"\0\0"), 1100) is None
    assert clock.event(ResponseCreated("r1", None), 1200) is None
    assert clock.event(AudioDelta("r1", "i1", b"\0\0"), 1750) == pytest.approx(0.75)
    # Measured once per turn.
    assert clock.event(AudioDelta("r1", "i1", b"\0\0"), 1800) is None
    # The caller speaks again before any reply: the turn starts over.
    clock.event(SpeechStopped(), 5000)
    clock.event(SpeechStarted(), 5100)
    clock.event(ResponseCreated("r2", None), 5200)
    assert clock.event(AudioDelta("r2", "i2", b"\0\0"), 5300) is None
    clock.event(SpeechStopped(), 6000)
    clock.event(ResponseCreated("r3", None), 6100)
    assert clock.event(AudioDelta("r3", "i3", b"\0\0"), 6400) == pytest.approx(0.4)


def test_turn_clock_over_webrtc_stops_at_the_playout_start() -> None:
    # Over WebRTC the reply's audio rides the media track: no deltas, only the data
    # channel's output_audio_buffer.started for the response.
    clock = TurnClock()
    clock.event(SpeechStopped(), 1000)
    clock.event(ResponseCreated("r1", None), 1100)
    assert clock.event(PlayoutStarted("r0"), 1200) is None  # another response's playout
    assert clock.event(PlayoutStarted("r1"), 1600) == pytest.approx(0.6)
    assert clock.event(PlayoutStarted("r1"), 1700) is None


def test_call_outcomes_and_the_metrics_a_call_leaves() -> None:
    assert call_outcome(True, "agent") == "answered"
    assert call_outcome(False, "caller") == "cancelled"
    assert call_outcome(False, "agent") == "failed"
    metrics = AgentMetrics(lambda: 3, lambda: True)
    call = CallMetrics(metrics)
    call.session_opened(0.12)
    call.answered()
    call.tool_call("ok")
    call.tool_call("timeout")
    call.finished(CallSummary(answered=True, ended_by="far end", interruptions=2, gap_frames=5))
    CallMetrics(metrics).finished(CallSummary(False, "caller", 0, 0))
    metrics.call_rejected(unavailable(30, "at capacity", "at_capacity"))
    metrics.call_rejected(Answer(488, "Not Acceptable Here"))
    metrics.registration_state("trunk-a", True)
    text = metrics.exposition().decode()
    assert sample(text, "voice_agent_active_calls") == 3
    assert sample(text, "voice_agent_ready") == 1
    assert sample(text, "voice_agent_calls_total", outcome="answered", ended_by="far_end") == 1
    assert sample(text, "voice_agent_calls_total", outcome="cancelled", ended_by="caller") == 1
    assert sample(text, "voice_agent_calls_total", outcome="answered", ended_by="caller") == 0
    assert sample(text, "voice_agent_rejected_calls_total", reason="at_capacity") == 1
    assert sample(text, "voice_agent_rejected_calls_total", reason="488") == 1
    assert sample(text, "voice_agent_call_duration_seconds_count") == 1
    assert sample(text, "voice_agent_realtime_connect_seconds_count") == 1
    assert sample(text, "voice_agent_barge_ins_total") == 2
    assert sample(text, "voice_agent_lost_frames_total", direction="to_caller") == 5
    assert sample(text, "voice_agent_tool_calls_total", outcome="ok") == 1
    assert sample(text, "voice_agent_tool_calls_total", outcome="timeout") == 1
    assert sample(text, "voice_agent_registration_up", account="trunk-a") == 1
    assert sample(text, "process_open_fds") > 0
    assert "_created" not in text


def test_the_request_policy_reports_refused_invites_but_not_options() -> None:
    refused: list[Answer] = []
    full = unavailable(30, "at capacity", "at_capacity")
    policy = RequestPolicy("agent", lambda: full, refused.append)

    def request(method: str, user: str = "agent", extra: str = "") -> None:
        text = (
            f"{method} sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999\r\n"
            f"Call-ID: x\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        )
        policy.decide(parse_request(text, "127.0.0.1", 5999))

    request("OPTIONS")
    request("INVITE")
    request("INVITE", user="admin")
    request("INVITE", extra="Replaces: a;to-tag=b;from-tag=c\r\n")
    assert [answer.kind for answer in refused] == ["at_capacity", "unknown_user", "replaces"]


def test_readiness_names_the_failing_checks() -> None:
    state = {"sip": True, "backend": False}
    readiness = Readiness({name: (lambda n=name: state[n]) for name in state})
    assert not readiness.ready
    assert readiness.checks() == {"sip": True, "backend": False}
    state["backend"] = True
    assert readiness.ready


async def test_backend_probe_sees_a_listener_and_its_absence() -> None:
    assert backend_address("wss://api.example.com/v1/realtime") == ("api.example.com", 443)
    assert backend_address("ws://127.0.0.1:8765/v1/realtime") == ("127.0.0.1", 8765)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    probe = BackendProbe(f"ws://127.0.0.1:{port}/v1/realtime", timeout_s=1.0)
    assert probe.reachable is None
    assert await probe.check() is True
    server.close()
    await server.wait_closed()
    assert await probe.check() is False
    assert probe.reachable is False and probe.error


async def test_http_listener_serves_the_routes_and_refuses_a_taken_port() -> None:
    metrics = AgentMetrics(lambda: 0, lambda: False)
    readiness = Readiness({"backend": lambda: False})
    listener = HttpListener("127.0.0.1", 0, health_routes(readiness, metrics))
    await listener.start()
    try:
        assert listener.bound_port != 0
        assert await http_get(f"{listener.url}/healthz") == (200, '{"status": "ok"}')
        status, body = await http_get(f"{listener.url}/readyz")
        assert status == 503 and '"backend": false' in body
        assert sample(await scrape(listener.url), "voice_agent_ready") == 0
        assert (await http_get(f"{listener.url}/nothing"))[0] == 404
        taken = HttpListener("127.0.0.1", listener.bound_port, [])
        with pytest.raises(ConfigError, match="cannot listen for HTTP"):
            await taken.start()
    finally:
        await listener.stop()


# -- on real calls ---------------------------------------------------------------------------


async def _call(agent: AgentProcess, call_ms: int, workdir: Path) -> int:
    """One call with real RTP both ways (the caller says one turn); SIPp's exit status."""
    peer = await RtpPeer.open()
    try:
        peer.talk(talk_then_pause(), "PCMU")
        result = await run_sipp(
            "uac_peer.xml", agent.sip_port, keys=peer.sipp_keys(),
            fill={"call_ms": str(call_ms)}, workdir=workdir,
        )  # fmt: skip
        assert peer.packets, "the agent sent no RTP"
        return result.returncode
    finally:
        peer.close()


@pytest.mark.sipp
@pytest.mark.timeout(90)
async def test_metrics_count_the_calls_placed(
    local_server: RecordingServer, tmp_path: Path
) -> None:
    config = tmp_path / "one-call.toml"
    config.write_text("[sip]\nmax_calls = 1\nretry_after_s = 7\n")
    agent = AgentProcess(free_port(), ["--realtime-url", local_server.url, "--config", str(config)])
    await agent.start()
    probe = await SipProbe.open()
    try:
        assert (await http_get(f"{agent.http_url}/readyz"))[0] == 200
        first = asyncio.create_task(_call(agent, 4000, tmp_path))
        await agent.wait_for("call_answered", 10)
        during = await scrape(agent.http_url)
        assert sample(during, "voice_agent_active_calls") == 1
        # Full: this INVITE is refused before a session; so is one to another user part.
        await expect_503(agent.sip_port, "7", tmp_path)
        assert await first == 0
        wrong = probe.send(
            "INVITE", ("127.0.0.1", agent.sip_port), user="admin",
            body=sdp_offer("127.0.0.1", 40000),
        )  # fmt: skip
        answer = await probe.final(wrong)
        assert answer is not None and answer.code == 404
        assert await _call(agent, 3000, tmp_path) == 0
        await agent.wait_for("call_finished", 10, count=2)

        text = await scrape(agent.http_url)
        assert sample(text, "voice_agent_calls_total", outcome="answered", ended_by="caller") == 2
        answered_or_not = sum(
            sample(text, "voice_agent_calls_total", outcome=o, ended_by=e)
            for o, e in [("cancelled", "caller"), ("failed", "agent"), ("failed", "far_end")]
        )
        assert answered_or_not == 0
        assert sample(text, "voice_agent_rejected_calls_total", reason="at_capacity") == 1
        assert sample(text, "voice_agent_rejected_calls_total", reason="unknown_user") == 1
        assert sample(text, "voice_agent_active_calls") == 0
        assert sample(text, "voice_agent_call_duration_seconds_count") == 2
        assert 2.5 < sample(text, "voice_agent_call_duration_seconds_sum") < 10
        assert sample(text, "voice_agent_realtime_connect_seconds_count") == 2
        # The caller's turn in each call got a spoken reply, timed from the server's VAD.
        assert sample(text, "voice_agent_first_audio_seconds_count") >= 2
        assert sample(text, "voice_agent_lost_frames_total", direction="to_caller") == 0
        logged = [line["interruptions"] for line in agent.events("call_finished")]
        assert sample(text, "voice_agent_barge_ins_total") == sum(logged)
        # Start-up's objects were frozen once; the collections since (two calls' worth of
        # frames make young-generation ones) are timed.
        assert len(agent.events("gc_settled")) == 1
        assert sample(text, "voice_agent_gc_pause_seconds_count", generation="0") > 0
    finally:
        probe.close()
        assert await agent.stop() == 0


@pytest.mark.sipp
@pytest.mark.timeout(60)
async def test_readyz_turns_503_while_draining(
    local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = AgentProcess(free_port(), ["--realtime-url", local_server.url])
    await agent.start()
    call = asyncio.create_task(_call(agent, 3500, tmp_path))
    try:
        await agent.wait_for("call_answered", 10)
        status, body = await http_get(f"{agent.http_url}/readyz")
        assert status == 200, body
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGTERM)
        await agent.wait_for("agent_draining", 5)
        status, body = await http_get(f"{agent.http_url}/readyz")
        assert status == 503 and '"not_draining": false' in body, body
        # Still alive, and still saying so, while the call runs to its end.
        assert (await http_get(f"{agent.http_url}/healthz"))[0] == 200
        assert await call == 0
        assert await asyncio.wait_for(agent.proc.wait(), 10) == 0
    finally:
        if not call.done():
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
        assert await agent.stop() == 0


async def test_a_taken_http_port_stops_the_start_with_status_2() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        agent = AgentProcess(
            free_port(),
            ["--realtime-url", "ws://127.0.0.1:9/v1/realtime", "--http-port", str(port)],
        )
        with pytest.raises(AssertionError, match="never logged"):
            await agent.start(timeout_s=15)
        assert agent.proc is not None
        assert await agent.proc.wait() == 2
        assert any("cannot listen for HTTP" in line for line in agent.raw)


async def test_a_probe_cancelled_as_its_connect_fails_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The agent stopping right after start-up, backend down: the cancel lands as the first
    # connect is refused. On Python 3.11 asyncio.wait_for swallowed that cancel, the probe
    # went on forever and the agent never finished stopping.
    async def refused(host: str, port: int) -> Any:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        raise ConnectionRefusedError(111, "Connect call failed")

    monkeypatch.setattr(asyncio, "open_connection", refused)
    probe = BackendProbe("ws://127.0.0.1:9/v1/realtime", interval_s=0.05)
    task = asyncio.create_task(probe.run())
    done, _ = await asyncio.wait({task}, timeout=1.0)
    assert done == {task} and task.cancelled()
    assert probe.reachable is False
