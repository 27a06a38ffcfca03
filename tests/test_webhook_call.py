"""End to end: real SIP calls (SIPp) to `voice-agent serve`, with the post-call webhook and
the pre-call lookup pointed at a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from agent.webhook.signing import verify
from testbed.peers import (
    CODEC_PT,
    AgentProcess,
    engine_args,
    free_port,
    run_sipp,
    write_g711_stream,
)
from testbed.recording import RecordingServer
from testbed.webhook_receiver import Received, Reply, WebhookReceiver, json_reply

pytestmark = [pytest.mark.above_sip, pytest.mark.sipp, pytest.mark.timeout(120)]

SECRET = "whsec-end-to-end-secret"
ENV = {"VA_HOOK_SECRET": SECRET}


def _config(tmp_path: Path, webhook: str, extra: str = "") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f'[webhook]\nsecret_env = "VA_HOOK_SECRET"\n{webhook}\n{extra}')
    return path


async def _call(agent: AgentProcess, tmp_path: Path, call_ms: int = 2500) -> None:
    stream = write_g711_stream(tmp_path / "caller.PCMU", "PCMU")
    pt = str(CODEC_PT["PCMU"])
    result = await run_sipp(
        "uac_audio.xml",
        agent.sip_port,
        keys={"codec_pt": pt, "codec_name": "PCMU"},
        fill={"stream_file": str(stream), "codec_pt": pt, "call_ms": str(call_ms)},
        workdir=tmp_path,
    )
    assert result.returncode == 0, result.output[-3000:]


def _assert_signed(request: Received) -> None:
    header = request.headers["x-voice-agent-signature"]
    assert verify(SECRET, request.body, header, now_s=request.at, tolerance_s=5)


async def test_the_receiver_gets_record_and_transcript_once_across_a_restart(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    receiver = WebhookReceiver(statuses=[503, 200])
    config = _config(tmp_path, f'url = "{receiver.url}"\nfirst_retry_s = 0.2\nmax_retry_s = 1.0')
    args = ["--realtime-url", local_server.url, "--config", str(config), *engine_args(engine)]
    agent = AgentProcess(free_port(), args, env=ENV)
    await agent.start()
    try:
        await _call(agent, tmp_path)
        await agent.wait_for("webhook_queued", 10)
        # The receiver is down: connections are refused, the delivery waits in the outbox.
        await agent.wait_for("webhook_attempt_failed", 10)
    finally:
        assert await agent.stop() == 0
    outbox = agent.records_dir / "outbox"
    (pending,) = outbox.glob("*.json")
    queued = pending.read_bytes()

    await receiver.start()
    restarted = AgentProcess(free_port(), args, env=ENV, records_dir=agent.records_dir)
    await restarted.start()
    try:
        await restarted.wait_for("webhook_delivered", 15)
        await asyncio.sleep(1.0)  # nothing more arrives after the 2xx
    finally:
        await restarted.stop()
        await receiver.stop()

    assert [r.headers["x-voice-agent-attempt"] for r in receiver.requests] == ["1", "2"]
    for request in receiver.requests:
        _assert_signed(request)
        assert request.body == queued  # the very bytes written before the first attempt
    assert len({r.headers["x-voice-agent-delivery"] for r in receiver.requests}) == 1
    assert not list(outbox.glob("*.json"))

    body = receiver.requests[-1].json()
    (transcript,) = agent.transcripts()
    call_end = transcript[-1]
    record = body["record"]
    assert body["type"] == "call.ended"
    assert body["call_id"] == record["call_id"] == call_end["call_id"]
    assert body["transcript"] == transcript
    for key in ("ended_by", "reason", "sip_code", "sip_call_id"):
        assert record[key] == call_end[key]
    assert record["ended_by"] == "caller"
    assert record["caller"] == "caller" and record["dialed"] == "agent"
    times = record["times"]
    assert times["invite"] <= times["answer"] <= times["end"]
    assert times["talk_ms"] > 1500
    # The webhook's record is the call record written beside the transcript.
    (written,) = agent.records_dir.glob("*.json")
    assert json.loads(written.read_text()) == record
    # The agent's log never shows the secret or the URL's path and query.
    logs = "\n".join(agent.raw + restarted.raw)
    assert SECRET not in logs and "not-for-logs" not in logs


def _instructions(server: RecordingServer, index: int) -> str:
    first = server.sessions[index].received[0]
    assert first["type"] == "session.update"
    return str(first["session"]["instructions"])


def _logged_at(line: dict[str, object]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


async def test_the_lookup_picks_profile_and_variables_and_a_slow_one_falls_back(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    answers = iter(
        [
            json_reply({"profile": "vip", "variables": {"name": "Ada", "caller": "forged"}}),
            json_reply({"profile": "vip"}, delay_s=5.0),  # far too late
            Reply(200, b"{not json"),
        ]
    )
    async with WebhookReceiver(handler=lambda _r: next(answers)) as receiver:
        config = _config(
            tmp_path,
            f'lookup_url = "{receiver.url}"\nlookup_timeout_ms = 400',
            '[agent]\ninstructions = "Default line."\n'
            '[profiles.vip]\ninstructions = "VIP line for {name}, calling from {caller}."\n',
        )
        agent = AgentProcess(
            free_port(),
            ["--realtime-url", local_server.url, "--config", str(config), *engine_args(engine)],
            env=ENV,
        )
        await agent.start()
        try:
            for _ in range(3):
                await _call(agent, tmp_path, call_ms=1500)
            await agent.wait_for("call_finished", 10, count=3)
        finally:
            await agent.stop()

    # Call 1: the profile and variables the lookup chose; the call's own caller wins.
    assert _instructions(local_server, 0) == "VIP line for Ada, calling from caller."
    (chosen,) = agent.events("call_profile")
    assert chosen["profile"] == "vip" and chosen["variables"] == ["caller", "name"]
    # Calls 2 and 3: too slow, then bad JSON: [agent], one line each with the call id.
    assert _instructions(local_server, 1) == "Default line."
    assert _instructions(local_server, 2) == "Default line."
    failed = agent.events("call_lookup_failed")
    assert [line["why"] for line in failed] == [
        "no answer within 400 ms",
        "the answer is not JSON",
    ]
    answered = agent.events("call_answered")
    assert all(line["call_id"] for line in failed)
    assert failed[0]["call_id"] == answered[1]["call_id"]

    # Every request was signed and said who calls whom.
    assert len(receiver.requests) == 3
    for request, line in zip(receiver.requests, answered, strict=True):
        _assert_signed(request)
        asked = request.json()
        assert asked["type"] == "call.lookup" and asked["call_id"] == line["call_id"]
        assert asked["caller"] == "caller" and asked["dialed"] == "agent"
    # The slow lookup held the answer back by its timeout at most (plus the session set-up),
    # never until its late reply.
    waited = _logged_at(answered[1]) - receiver.requests[1].at
    assert waited < 0.4 + 1.5, f"answered {waited:.2f} s after the lookup was sent"
    assert time.time() > receiver.requests[1].at  # sanity: clocks are the same machine's


async def test_the_lookups_profile_overrides_the_routes_and_no_choice_keeps_it(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    """Precedence (README "Webhooks"): the lookup's profile, then the route's, then the base."""
    answers = iter(
        [
            json_reply({"profile": "vip", "variables": {"name": "Ada"}}),
            Reply(204),
            json_reply({"variables": {"name": "Bo"}}),
        ]
    )
    async with WebhookReceiver(handler=lambda _r: next(answers)) as receiver:
        config = tmp_path / "agent.toml"
        config.write_text(
            'default_profile = "sales"\n'
            f'[webhook]\nsecret_env = "VA_HOOK_SECRET"\nlookup_url = "{receiver.url}"\n'
            '[agent]\ninstructions = "Base line."\n'
            '[profiles.sales]\ninstructions = "Sales line for {name}."\n'
            '[profiles.vip]\ninstructions = "VIP line for {name}."\n'
        )
        agent = AgentProcess(
            free_port(),
            ["--realtime-url", local_server.url, "--config", str(config), *engine_args(engine)],
            env=ENV,
        )
        await agent.start()
        try:
            for _ in range(3):
                await _call(agent, tmp_path, call_ms=1500)
            await agent.wait_for("call_finished", 10, count=3)
        finally:
            await agent.stop()

    assert [line["profile"] for line in agent.events("call_routed")] == ["sales"] * 3
    assert _instructions(local_server, 0) == "VIP line for Ada."
    assert _instructions(local_server, 1) == "Sales line for {name}."
    assert _instructions(local_server, 2) == "Sales line for Bo."
    # One line per answer: the profile the call ended up with.
    assert [line["profile"] for line in agent.events("call_profile")] == ["vip", "sales", "sales"]
