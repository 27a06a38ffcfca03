"""WebRTC failures after (and of) the SDP exchange, told apart in one line each: ICE (the
answer's candidates lead nowhere), DTLS (the answer's fingerprint is another certificate's)
and the exchange's HTTP status. A call meeting one is refused with 503 and Retry-After, and
``voice-agent check`` reports it over the configured transport, for GPT-Live too."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.realtime.connection import RealtimeConnectError
from agent.realtime.dialect import Dialect
from agent.realtime.endpoint import RealtimeEndpoint, SdpExchange
from agent.realtime.webrtc.connection import WebRtcConnection
from testbed.peers import (
    DEFAULT_SIP_ENGINE,
    REPO,
    AgentProcess,
    engine_args,
    expect_503,
    free_port,
)
from testbed.recording import RecordingServer
from testbed.sdp_proxy import SpoilingProxy

#: What each spoiled exchange must be reported as.
_LINES = {
    "ice": "ICE failed",
    "dtls": "DTLS failed",
    "http401": "SDP exchange: HTTP 401 authentication failed",
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("spoil", ["ice", "dtls"])
async def test_a_spoiled_answer_fails_in_one_line_within_the_timeout(spoil: str) -> None:
    async with (
        RecordingServer(webrtc=True) as server,
        SpoilingProxy(server.calls_url or "", spoil) as proxy,
    ):
        endpoint = RealtimeEndpoint(
            "custom", server.url, Dialect.GA, sdp=SdpExchange(proxy.url, "gpt-realtime-2.1")
        )
        started = time.monotonic()
        with pytest.raises(RealtimeConnectError) as failed:
            await WebRtcConnection.open(endpoint, 3.0)
        elapsed = time.monotonic() - started
    line = str(failed.value)
    assert _LINES[spoil] in line and "\n" not in line, line
    assert line.startswith(f"custom {proxy.url}: "), line
    assert elapsed < 4.0, elapsed
    assert proxy.offers == 1


@pytest.mark.sipp
@pytest.mark.timeout(60)
@pytest.mark.parametrize("spoil", ["ice", "dtls", "http401"])
async def test_a_call_whose_webrtc_session_fails_is_refused_with_503(
    spoil: str, tmp_path: Path
) -> None:
    config = tmp_path / "fast.toml"
    config.write_text("[realtime]\nconnect_timeout_s = 2.0\n\n[sip]\nretry_after_s = 9\n")
    async with (
        RecordingServer(webrtc=True) as server,
        SpoilingProxy(server.calls_url or "", spoil) as proxy,
    ):
        agent = AgentProcess(
            free_port(),
            ["--realtime-url", server.url, "--webrtc-url", proxy.url, "--transport", "webrtc",
             "--config", str(config), *engine_args(DEFAULT_SIP_ENGINE)],
        )  # fmt: skip
        await agent.start()
        try:
            await expect_503(agent.sip_port, "9", tmp_path)
            (failed,) = agent.events("realtime_connect_failed")
            assert _LINES[spoil] in failed["error"] and "\n" not in failed["error"], failed
            assert failed["call_id"]
            (finished,) = await agent.wait_for("call_finished", 5)
            assert finished["reason"] == "the realtime session could not be opened"
        finally:
            assert await agent.stop() == 0


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", *args, "--env-file", os.devnull],
        cwd=REPO,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(90)
def test_check_starts_a_local_gpt_live_session_over_webrtc() -> None:
    result = _check("--protocol", "live", "--transport", "webrtc")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "transport: webrtc" in result.stdout and "protocol: GPT-Live" in result.stdout
    assert "/v1/live/sessions" in result.stdout and "http://" in result.stdout
    assert "result:   ok" in result.stdout


@pytest.mark.timeout(60)
async def test_check_reports_ice_failing_over_webrtc() -> None:
    async with (
        RecordingServer(webrtc=True) as server,
        SpoilingProxy(server.calls_url or "", "ice") as proxy,
    ):
        args = ("--realtime-url", server.url, "--webrtc-url", proxy.url, "--transport", "webrtc")
        result = await asyncio.to_thread(_check, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "transport: webrtc" in result.stdout
    (outcome,) = [line for line in result.stdout.splitlines() if line.startswith("result:")]
    assert "FAILED" in outcome and "ICE failed" in outcome, outcome
