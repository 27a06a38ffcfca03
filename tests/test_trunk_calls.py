"""End to end: numbers routed to profiles, and who may call, on both SIP engines.

SIPp dials numbers at ``voice-agent serve`` on 127.0.0.1; 127.0.0.2 plays the stranger
(``sip.allow_from`` then names 127.0.0.1 alone). The realtime side is a RecordingServer in
this process, so each test sees the ``session.update`` and greeting a call produced.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from testbed.peers import AgentProcess, RtpPeer, engine_args, free_port, run_sipp, talk_then_pause
from testbed.recording import RecordingServer
from tests.test_abuse import _svwar_found as svwar_found

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(120)]

STRANGER = "127.0.0.2"
_PROFILES = """
[sip]
allow_from = ["127.0.0.1/32"]

[[routes]]
dialed = "+15550001"
profile = "sales"

[[routes]]
dialed = "+1555000[2-9]"
profile = "support"

[profiles.sales]
instructions = "You are the sales line; the caller dialled {dialed}."
greeting = "Thank the caller for calling sales."

[profiles.support]
instructions = "You are the support line."
greeting = "Ask the caller which product they need help with."
"""


async def _agent(engine: str, url: str, tmp_path: Path, profile: str) -> AgentProcess:
    config = tmp_path / "agent.toml"
    config.write_text(profile)
    agent = AgentProcess(
        free_port(), ["--realtime-url", url, *engine_args(engine), "--config", str(config)]
    )
    await agent.start()
    return agent


async def _dial(agent: AgentProcess, number: str, tmp_path: Path) -> None:
    peer = await RtpPeer.open()
    try:
        peer.talk(talk_then_pause(0.6, 0.4), "PCMU")
        result = await run_sipp(
            "uac_dial.xml", agent.sip_port, keys=peer.sipp_keys("PCMU"),
            fill={"call_ms": "1500"}, workdir=tmp_path, extra_args=["-s", number],
        )  # fmt: skip
        assert result.returncode == 0, result.output[-3000:]
    finally:
        peer.close()


async def _refused(
    agent: AgentProcess, number: str, code: int, tmp_path: Path, local_ip: str = "127.0.0.1"
) -> None:
    result = await run_sipp(
        "uac_expect_code.xml", agent.sip_port, fill={"code": str(code)}, workdir=tmp_path,
        extra_args=["-s", number], local_ip=local_ip, timeout_s=20,
    )  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]


async def test_two_numbers_reach_two_profiles_and_an_unrouted_one_gets_404(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(engine, local_server.url, tmp_path, _PROFILES)
    try:
        await _dial(agent, "+15550001", tmp_path)
        await _dial(agent, "+1-555-0003", tmp_path)  # normalised to +15550003: support
        await _refused(agent, "+15559999", 404, tmp_path)
        await agent.wait_for("call_finished", 10, count=2)
        assert len(local_server.sessions) == 2  # the 404 never opened a session
        sales, support = local_server.sessions
        updates = [
            next(e for e in s.received if e["type"] == "session.update") for s in (sales, support)
        ]
        instructions = [update["session"]["instructions"] for update in updates]
        assert instructions == [
            "You are the sales line; the caller dialled +15550001.",
            "You are the support line.",
        ]
        greetings = [
            next(e for e in s.received if e["type"] == "response.create")["response"][
                "instructions"
            ]
            for s in (sales, support)
        ]
        assert greetings == [
            "Thank the caller for calling sales.",
            "Ask the caller which product they need help with.",
        ]
        routed = agent.events("call_routed")
        assert [(r["profile"], r["dialed"]) for r in routed] == [
            ("sales", "+15550001"),
            ("support", "+15550003"),
        ]
        rejected = agent.events("call_rejected")
        assert any(r["code"] == 404 and "+15559999" in r["reason"] for r in rejected)
    finally:
        assert await agent.stop() == 0


async def test_a_stranger_gets_403_and_its_burst_is_dropped_while_a_call_connects(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(engine, local_server.url, tmp_path, _PROFILES)
    try:
        await _refused(agent, "+15550001", 403, tmp_path, local_ip=STRANGER)
        # A burst of 60 INVITEs from the stranger at 200/s: most are dropped unanswered (the
        # scenario's calls fail), and meanwhile a call from the allowed address connects.
        flood = run_sipp(
            "uac_expect_code.xml", agent.sip_port, fill={"code": "403"}, workdir=tmp_path,
            extra_args=["-s", "+15550001", "-recv_timeout", "2s"], local_ip=STRANGER,
            calls=60, concurrent=60, rate=200, timeout_s=20,
        )  # fmt: skip
        burst = asyncio.create_task(flood)
        await _dial(agent, "+15550001", tmp_path)
        result = await burst
        assert result.returncode != 0, "every INVITE of the burst was answered"
        assert len(local_server.sessions) == 1
        await agent.wait_for("call_finished", 10)
        # Logged, but not once per packet.
        lines = [
            line
            for line in agent.lines
            if line.get("event") in ("call_rejected", "sip_request_dropped")
            and str(line.get("source", "")).startswith(STRANGER)
        ]
        assert 1 <= len(lines) <= 4, lines
        assert any(line["code"] == 403 for line in lines)
    finally:
        assert await agent.stop() == 0


@pytest.mark.skipif(shutil.which("svwar") is None, reason="sipvicious not installed")
async def test_svwar_and_svmap_find_nothing_from_a_stranger(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    # svwar (sipvicious 0.3.x) ignores -b and sends from 127.0.0.1: for this test the only
    # allowed source is another address, so the scanner is the stranger wherever it binds.
    profile = _PROFILES.replace('"127.0.0.1/32"', '"127.0.0.3/32"')
    agent = await _agent(engine, local_server.url, tmp_path, profile)
    words = tmp_path / "extensions.txt"
    words.write_text("agent\n+15550001\n15550001\nsales\nadmin\n")
    try:
        for method in ("REGISTER", "INVITE", "OPTIONS"):
            scan = await asyncio.create_subprocess_exec(
                "svwar", "-m", method, "-e", "15550000-15550010", "-d", str(words),
                "-p", str(agent.sip_port), "-b", STRANGER, "127.0.0.1",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(scan.communicate(), 90)
            text = out.decode(errors="replace")
            assert svwar_found(text) == set(), text[-2000:]
        scan = await asyncio.create_subprocess_exec(
            "svmap", "127.0.0.1", "-p", str(agent.sip_port), "-b", STRANGER,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(scan.communicate(), 60)
        assert f"127.0.0.1:{agent.sip_port}" not in out.decode(errors="replace")
        assert local_server.sessions == []
    finally:
        assert await agent.stop() == 0


async def test_a_peer_with_the_right_password_connects_and_a_wrong_one_gets_403(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        '[sip]\nallow_from = []\n\n[[sip.peers]]\nname = "pbx"\nusername = "pbx"\n'
        'password_env = "PBX_PASSWORD"\n'
    )
    agent = AgentProcess(
        free_port(),
        ["--realtime-url", local_server.url, *engine_args(engine), "--config", str(config)],
        env={"PBX_PASSWORD": "pbx-secret"},
    )
    await agent.start()
    peer = await RtpPeer.open()
    try:
        peer.talk(talk_then_pause(0.6, 0.4), "PCMU")
        for password, connects in (("pbx-secret", True), ("guess", False)):
            result = await run_sipp(
                "uac_auth.xml", agent.sip_port, keys=peer.sipp_keys("PCMU"),
                fill={"call_ms": "1500"}, workdir=tmp_path, timeout_s=20,
                extra_args=["-au", "pbx", "-ap", password],
            )  # fmt: skip
            assert (result.returncode == 0) is connects, result.output[:600]
        assert len(local_server.sessions) == 1
        # SIPp is gone as soon as the 403 arrives; the agent's line about it may still be
        # on its way through the pipe.
        rejected = await agent.wait_for("call_rejected", 5)
        assert any(r["code"] == 403 for r in rejected)
        [routed] = agent.events("call_routed")
        assert routed["account"] == "pbx"
    finally:
        peer.close()
        assert await agent.stop() == 0


async def test_on_a_public_address_the_loopback_only_default_is_said_loudly(
    local_server: RecordingServer,
) -> None:
    agent = AgentProcess(free_port(), ["--realtime-url", local_server.url, "--sip-host", "0.0.0.0"])
    await agent.start()
    try:
        [line] = await agent.wait_for("sip_callers_loopback_only", 5)
        assert line["level"] == "warning" and "sip.allow_from" in line["detail"]
        [callers] = agent.events("sip_callers")
        assert callers["allow_from"] == ["127.0.0.0/8", "::1/128"]
    finally:
        assert await agent.stop() == 0
