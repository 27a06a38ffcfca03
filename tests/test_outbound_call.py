"""End to end: `voice-agent call` places real calls to SIPp callees on 127.0.0.1.

SIPp signals as the callee (testbed/sipp/uas_*.xml); the test's RtpPeer is the callee's
media where there is a conversation; the realtime side is the local server, run in this
process so the test sees what reached the model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from agent.audio.levels import rms_dbfs, tone
from agent.outbound.outcome import EXIT_STATUS
from agent.realtime.dialect import Dialect
from testbed.callee_audio import CalleeAudio, hello, voicemail
from testbed.oracle import LIVE, validate_client_event, validate_server_event
from testbed.peers import (
    CallCommand,
    RtpPeer,
    engine_args,
    free_port,
    sipp_callee,
    speech_like,
)
from testbed.recording import RecordingServer
from testbed.responders import tone_responder

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(90)]

#: Any SIPp callee on this machine, and nothing else.
ALLOW_LOOPBACK = r"sip:callee@127\.0\.0\.1:[0-9]+"


@pytest.fixture
async def model() -> AsyncIterator[RecordingServer]:
    async with RecordingServer(
        responder_factory=tone_responder(1.0, "Hello from the agent.")
    ) as server:
        yield server


def _config(tmp_path: Path, extra: str = "", allow: str = ALLOW_LOOPBACK) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f"[outbound]\nallow = ['{allow}']\n{extra}\n"
        # The agent ends the conversation itself, after a few seconds.
        "[agent]\nmax_call_s = 5\nmax_call_goodbye_s = 0\n"
    )
    return config


def _once(audio: CalleeAudio) -> bytes:
    """``audio`` then long silence: RtpPeer loops what it plays, a callee does not."""
    return audio.pcm + bytes(audio.rate * 2 * 20)


def _person() -> bytes:
    """A person picking up: "hello?" and a pause (the detector's: a person), then, while
    the agent greets, a reply of their own (what the model hears of them)."""
    reply = speech_like(1.0).astype("<i2").tobytes()
    return hello(tail_ms=1500).pcm + reply + bytes(8000 * 2 * 20)


async def test_an_answered_call_is_a_conversation_both_ways(
    engine: str, model: RecordingServer, tmp_path: Path
) -> None:
    peer = await RtpPeer.open()
    callee = await sipp_callee(
        "uas_answer.xml", tmp_path / "sipp", keys={"sink_port": str(peer.port)}
    )
    try:
        peer.talk(_person(), "PCMU")
        command = CallCommand()
        config = _config(
            tmp_path,
            "[profiles.reminder]\n"
            "instructions = 'You remind {name} of an appointment; you called {dialed}.'\n"
            "greeting = 'Tell {name} you are calling about tomorrow.'\n",
        )
        status = await command.run(
            callee.uri,
            [
                "--config", str(config), "--realtime-url", model.url, *engine_args(engine),
                "--profile", "reminder", "--var", "name=Ada",
            ],
        )  # fmt: skip
        tail = "\n".join(command.raw[-30:])
        assert status == EXIT_STATUS["answered"], tail
        result = await callee.result()
        assert result.returncode == 0, result.output[-2000:]
    finally:
        peer.close()

    # The callee's reply reached the model; the agent's greeting reached the callee.
    assert len(model.sessions) == 1
    session = model.sessions[0]
    assert rms_dbfs(bytes(session.input_audio)) > -40
    for event in session.received:
        validate_client_event(Dialect.GA, event)
    for event in session.sent:
        validate_server_event(Dialect.GA, event)
    heard = peer.audio()
    assert rms_dbfs(heard) > -30, "the callee heard no agent audio"

    (record,) = command.records()
    assert record["direction"] == "outbound"
    # A person: "hello?", then a pause; the agent greeted only after the verdict.
    assert record["amd"]["verdict"] == "human"
    (verdict,) = command.events("amd_verdict")
    assert verdict["then"] == "talk"
    creates = [e for e in session.received if e["type"] == "response.create"]
    # The profile asked for, its placeholders filled from --var and the call itself.
    assert creates[0]["response"]["instructions"] == "Tell Ada you are calling about tomorrow."
    update = next(e for e in session.received if e["type"] == "session.update")
    assert update["session"]["instructions"] == (
        f"You remind Ada of an appointment; you called {callee.uri}."
    )
    assert record["profile"] == "reminder"
    # Times since the session's first event, which goes out by the answer.
    asked = session.received_at[session.received.index(creates[0])] - session.received_at[0]
    assert asked * 1000 >= record["amd"]["decided_ms"] - 300
    outbound = record["outbound"]
    assert outbound["outcome"] == "answered"
    assert [p["code"] for p in outbound["progress"]] == [180]
    # On loopback the 180 can come within the INVITE's millisecond (baresip: ~1 ms): 0 too.
    assert 0 <= outbound["progress_ms"] <= outbound["answer_ms"] < outbound["end_ms"]
    assert record["dialed_uri"] == callee.uri
    (line,) = command.events("outbound_call_outcome")
    assert line["outcome"] == "answered"


@pytest.mark.parametrize(
    ("code", "reason", "outcome"),
    [("486", "Busy Here", "busy"), ("603", "Decline", "rejected")],
)
async def test_a_refusing_callee(
    code: str, reason: str, outcome: str, model: RecordingServer, tmp_path: Path
) -> None:
    callee = await sipp_callee(
        "uas_reject.xml", tmp_path / "sipp", fill={"code": code, "reason": reason}
    )
    command = CallCommand()
    status = await command.run(
        callee.uri, ["--config", str(_config(tmp_path)), "--realtime-url", model.url]
    )
    assert status == EXIT_STATUS[outcome], "\n".join(command.raw[-30:])
    assert (await callee.result()).returncode == 0
    (record,) = command.records()
    assert record["outbound"]["outcome"] == outcome
    assert record["sip_code"] == int(code)
    assert record["outbound"]["answer_ms"] is None
    assert any(f"voice-agent call: {outcome}: " in line for line in command.raw)


async def test_no_answer_is_cancelled_after_the_ring_timeout(
    engine: str, model: RecordingServer, tmp_path: Path
) -> None:
    callee = await sipp_callee("uas_ring_forever.xml", tmp_path / "sipp")
    command = CallCommand()
    status = await command.run(
        callee.uri,
        [
            "--config", str(_config(tmp_path)), "--realtime-url", model.url,
            "--ring-timeout", "2", *engine_args(engine),
        ],
    )  # fmt: skip
    assert status == EXIT_STATUS["no_answer"], "\n".join(command.raw[-30:])
    # SIPp's scenario passes only once it received the CANCEL.
    result = await callee.result()
    assert result.returncode == 0, result.output[-2000:]
    assert "CANCEL sip:callee@127.0.0.1" in callee.messages()
    (record,) = command.records()
    outbound = record["outbound"]
    assert outbound["outcome"] == "no_answer" and outbound["ring_timed_out"]
    assert 2000 <= outbound["end_ms"] < 6000


async def test_a_destination_outside_the_allow_patterns_sends_no_invite(
    model: RecordingServer, tmp_path: Path
) -> None:
    callee = await sipp_callee(
        "uas_answer.xml", tmp_path / "sipp", keys={"sink_port": "4000"}, timeout_s=8
    )
    config = tmp_path / "agent.toml"
    config.write_text("[outbound]\nallow = ['sip:someone@pbx\\.example\\.com']\n")
    command = CallCommand()
    status = await command.run(callee.uri, ["--config", str(config), "--realtime-url", model.url])
    assert status == EXIT_STATUS["refused"], "\n".join(command.raw[-30:])
    assert any("refused: not_allowed" in line for line in command.raw)
    (refusal,) = command.events("outbound_call_refused")
    assert refusal["rule"] == "not_allowed"
    callee.task.cancel()
    await asyncio.gather(callee.task, return_exceptions=True)
    assert "INVITE" not in callee.messages()
    assert not command.records()


async def test_a_number_goes_through_its_account(
    engine: str, model: RecordingServer, tmp_path: Path
) -> None:
    """The account registers, the INVITE goes to the number at its registrar with the
    --from number as caller ID (PJSIP: From; baresip: P-Asserted-Identity, From the
    account), and answers the trunk's digest challenge with the account's password."""
    trunk = await sipp_callee("uas_trunk.xml", tmp_path / "sipp", calls=2)
    config = _config(
        tmp_path,
        "home_country_code = '49'\n"
        "[[sip.accounts]]\nname = 'trunk'\n"
        f"registrar = 'sip:127.0.0.1:{trunk.port}'\n"
        "username = 'agentline'\npassword_env = 'TRUNK_PASSWORD'\n",
        allow=r"\+4930[0-9]+",
    )
    command = CallCommand()
    status = await command.run(
        "+4930123456",
        [
            "--config", str(config), "--realtime-url", model.url, *engine_args(engine),
            "--account", "trunk", "--from", "+4930999",
        ],
        env={"TRUNK_PASSWORD": "trunk-secret-1"},
    )  # fmt: skip
    # Busy: the trunk's answer to an INVITE whose digest it verified (403 otherwise).
    assert status == EXIT_STATUS["busy"], "\n".join(command.raw[-30:])
    result = await trunk.result()
    assert result.returncode == 0, result.output[-2000:]
    messages = trunk.messages()
    # (baresip adds the account's ;transport=udp)
    assert f"INVITE sip:+4930123456@127.0.0.1:{trunk.port}" in messages
    assert 'username="agentline"' in messages
    if engine == "pjsip":
        assert "sip:+4930999@127.0.0.1" in messages
    else:
        assert "From: <sip:agentline@" in messages
        assert "P-Asserted-Identity: <sip:+4930999@127.0.0.1" in messages
    (record,) = command.records()
    assert record["outbound"]["account"] == "trunk"
    assert record["outbound"]["outcome"] == "busy"


async def test_nobody_there_is_a_failure_not_a_missed_call(
    engine: str, model: RecordingServer, tmp_path: Path
) -> None:
    """A callee address where nothing answers SIP: not even a 100 Trying before the ring
    timeout."""
    command = CallCommand()
    dead = f"sip:callee@127.0.0.1:{free_port()}"
    status = await command.run(
        dead,
        [
            "--config", str(_config(tmp_path)), "--realtime-url", model.url,
            "--ring-timeout", "2", *engine_args(engine),
        ],
    )  # fmt: skip
    assert status == EXIT_STATUS["failed"], "\n".join(command.raw[-30:])
    (record,) = command.records()
    assert record["outbound"]["outcome"] == "failed"
    assert record["reason"] == "no SIP response within 2 s"


async def test_a_machine_gets_the_message_after_its_beep(
    model: RecordingServer, tmp_path: Path
) -> None:
    """A 6-second greeting, then the beep: the agent holds its tongue through the greeting,
    speaks the profile's voicemail message after the beep, and hangs up."""
    peer = await RtpPeer.open()
    callee = await sipp_callee(
        "uas_answer.xml", tmp_path / "sipp", keys={"sink_port": str(peer.port)}
    )
    machine = voicemail()
    assert machine.beep_ms is not None
    config = tmp_path / "agent.toml"
    config.write_text(
        f"[outbound]\nallow = ['{ALLOW_LOOPBACK}']\n"
        "[agent]\nvoicemail_instructions = 'Say that {name} has an appointment tomorrow.'\n"
    )
    try:
        peer.talk(_once(machine), "PCMU")
        command = CallCommand()
        status = await command.run(
            callee.uri,
            ["--config", str(config), "--realtime-url", model.url, "--var", "name=Ada"],
        )
        assert status == EXIT_STATUS["answered"], "\n".join(command.raw[-30:])
        assert (await callee.result()).returncode == 0
    finally:
        peer.close()
    (record,) = command.records()
    amd = record["amd"]
    assert amd["verdict"] == "machine"
    assert amd["greeting_end"] == "beep"
    assert abs(amd["beep_ms"] - machine.beep_ms) < 400
    assert record["reason"] == "answering machine: message left"
    # The only response asked for is the message, with the request's variable filled in.
    (session,) = model.sessions
    creates = [e for e in session.received if e["type"] == "response.create"]
    assert [c["response"]["instructions"] for c in creates] == [
        "Say that Ada has an appointment tomorrow."
    ]
    # ... asked for after the beep (times since the session's first event, sent by the
    # answer).
    asked = session.received_at[session.received.index(creates[0])] - session.received_at[0]
    assert asked * 1000 >= machine.beep_ms - 300
    assert rms_dbfs(peer.audio()) > -30, "the machine recorded no message"


async def test_a_gpt_live_session_starts_with_the_answers_codec(
    model: RecordingServer, tmp_path: Path
) -> None:
    """GPT-Live's session starts only once the call's codec is known: on a placed call that
    is the answer's, after the session opened while it rang."""
    peer = await RtpPeer.open()
    callee = await sipp_callee(
        "uas_answer.xml", tmp_path / "sipp", keys={"sink_port": str(peer.port)}
    )
    try:
        peer.talk(_person(), "PCMU")
        command = CallCommand()
        status = await command.run(
            callee.uri,
            [
                "--config", str(_config(tmp_path)), "--realtime-url", model.live_url,
                "--protocol", "live",
            ],
        )  # fmt: skip
        assert status == EXIT_STATUS["answered"], "\n".join(command.raw[-30:])
        assert (await callee.result()).returncode == 0
    finally:
        peer.close()
    starts = [(s, e) for s in model.sessions for e in s.received if e["type"] == "session.start"]
    assert len(starts) == 1
    session, start = starts[0]
    for event in session.received:
        validate_client_event(LIVE, event)
    assert start["session"]["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    assert rms_dbfs(peer.audio()) > -30, "the callee heard no agent audio"
    (record,) = command.records()
    assert record["amd"]["verdict"] == "human"


async def test_early_media_never_reaches_the_model(
    engine: str, model: RecordingServer, tmp_path: Path
) -> None:
    """A 183 with SDP, and a loud ringback on it for 1 s, the answer 1.5 s later: the model
    hears the line only from the answer on (detection off, so it hears it at once)."""
    peer = await RtpPeer.open()
    callee = await sipp_callee(
        "uas_early_media.xml",
        tmp_path / "sipp",
        keys={"sink_port": str(peer.port)},
        fill={"early_ms": "1500"},
    )
    wall = time.time() - time.monotonic()
    ringback = tone(425.0, 1000, 8000, dbfs=-10.0)
    try:
        peer.talk(ringback + bytes(8000 * 2 * 20), "PCMU")
        command = CallCommand()
        status = await command.run(
            callee.uri,
            [
                "--config", str(_config(tmp_path, "[outbound.amd]\nenabled = false\n")),
                "--realtime-url", model.url, *engine_args(engine),
            ],
        )  # fmt: skip
        assert status == EXIT_STATUS["answered"], "\n".join(command.raw[-30:])
        assert (await callee.result()).returncode == 0
    finally:
        peer.close()
    (record,) = command.records()
    assert [p["code"] for p in record["outbound"]["progress"]] == [183]
    answered = datetime.fromisoformat(record["times"]["answer"]).timestamp()
    # The ringback played out before the answer (it starts with the agent's first packet).
    assert peer.packets and peer.packets[0].arrival + wall + 1.0 < answered
    (session,) = model.sessions
    heard = bytes(session.input_audio)
    assert len(heard) > 24000 * 2, "the model heard nothing of the answered call"
    assert rms_dbfs(heard) < -50, "the early media's ringback reached the model"
