"""End to end: the outbound-call API of `voice-agent serve`, placing a real call to SIPp."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from testbed.peers import AgentProcess, RtpPeer, free_port, sipp_callee, speech_like
from testbed.recording import RecordingServer
from testbed.responders import tone_responder

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(90)]

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
async def model() -> AsyncIterator[RecordingServer]:
    async with RecordingServer(responder_factory=tone_responder(1.0, "Hello.")) as server:
        yield server


async def _agent(model: RecordingServer, tmp_path: Path) -> AgentProcess:
    config = tmp_path / "agent.toml"
    config.write_text(
        "[outbound]\n"
        "allow = ['sip:callee@127\\.0\\.0\\.1:[0-9]+']\n"
        "api = true\napi_token_env = 'OUTBOUND_TOKEN'\n"
    )
    agent = AgentProcess(
        free_port(),
        ["--realtime-url", model.url, "--config", str(config)],
        env={"OUTBOUND_TOKEN": TOKEN},
    )
    await agent.start()
    return agent


async def _until(
    http: aiohttp.ClientSession, url: str, done: Any, timeout_s: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        async with http.get(url) as response:
            body: dict[str, Any] = await response.json()
        if done(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.1)


async def test_the_api_places_reports_and_hangs_up_a_call(
    model: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(model, tmp_path)
    peer = await RtpPeer.open()
    callee = await sipp_callee(
        "uas_answer.xml", tmp_path / "sipp", keys={"sink_port": str(peer.port)}
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    base = f"{agent.http_url}/v1/calls"
    try:
        peer.talk(speech_like(0.6).tobytes() + bytes(160000), "PCMU")
        async with aiohttp.ClientSession() as anonymous:
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
                async with anonymous.post(base, json={"to": callee.uri}, headers=headers) as r:
                    assert r.status == 401
                    assert (await r.json())["error"]["code"] == "unauthorized"
            async with anonymous.get(base, headers={"Authorization": TOKEN}) as r:
                assert r.status == 401
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.post(base, json={"to": callee.uri, "ring_timeout_s": "x"}) as r:
                assert r.status == 400
                assert (await r.json())["error"]["field"] == "ring_timeout_s"
            async with http.post(base, json={"to": "sip:other@127.0.0.2:5060"}) as r:
                assert r.status == 403
                assert (await r.json())["error"]["rule"] == "not_allowed"
            async with http.post(base, data=b"{" + b" " * 20000 + b"}") as r:
                assert r.status == 413
            async with http.get(f"{base}/01NOSUCHCALL") as r:
                assert r.status == 404

            async with http.post(base, json={"to": callee.uri, "variables": {"name": "Ada"}}) as r:
                assert r.status == 201, await r.text()
                call_id = (await r.json())["call_id"]
            url = f"{base}/{call_id}"
            answered = await _until(http, url, lambda b: b["state"] == "answered")
            assert answered["state"] == "answered"
            assert [p["code"] for p in answered["progress"]] == [180]
            assert answered["timings"]["answer_ms"] >= answered["timings"]["progress_ms"] > 0
            talked = await _until(http, url, lambda b: b["transcript"], timeout_s=8)
            assert {"role": "agent", "text": "Hello."} in talked["transcript"]
            async with http.get(base) as r:
                assert [c["call_id"] for c in (await r.json())["calls"]] == [call_id]

            async with http.post(f"{url}/hangup") as r:
                assert r.status == 202
            ended = await _until(http, url, lambda b: b["state"] == "ended")
            assert ended["outcome"] == "answered"
            assert ended["reason"] == "hung up through the API"
            async with http.post(f"{url}/hangup") as r:
                assert r.status == 409
            async with http.get(f"{agent.http_url}/metrics") as r:
                metrics = await r.text()
            assert 'voice_agent_outbound_calls_total{outcome="answered"} 1.0' in metrics
            assert 'voice_agent_outbound_calls_total{outcome="refused"} 1.0' in metrics
            assert 'voice_agent_outbound_refused_total{rule="not_allowed"} 1.0' in metrics
            # Placed calls are not counted with the calls the agent takes.
            assert 'voice_agent_calls_total{ended_by="agent",outcome="answered"} 0.0' in metrics
        result = await callee.result()
        assert result.returncode == 0, result.output[-2000:]
    finally:
        peer.close()
        await agent.stop()
