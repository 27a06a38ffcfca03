"""The command line: bad configuration exits 2 with one clear line, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.peers import HOST, REPO, engine_args


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "serve", "--env-file", os.devnull, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _assert_one_clear_error(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("voice-agent: error: ")
    assert words in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[sip]\nmax_call = 2\n")
    _assert_one_clear_error(_serve("--config", str(config)), "unknown key 'max_call'")


def test_a_bad_allow_from_is_one_clear_error() -> None:
    _assert_one_clear_error(_serve("--allow-from", "front-door"), "--allow-from: 'front-door'")


def test_allow_from_adds_to_the_profiles_sources(tmp_path: Path) -> None:
    from agent.cli import _parser, _settings

    config = tmp_path / "agent.toml"
    config.write_text('[sip]\nallow_from = ["203.0.113.0/28"]\n')
    args = ["serve", "--config", str(config), "--env-file", os.devnull]
    settings = _settings(_parser().parse_args([*args, "--allow-from", "10.0.0.5"]))
    assert settings.sip.allow_from == ("203.0.113.0/28", "10.0.0.5")


def test_missing_file(tmp_path: Path) -> None:
    _assert_one_clear_error(
        _serve("--config", str(tmp_path / "absent.toml")), "config file not found"
    )


def test_bad_url() -> None:
    _assert_one_clear_error(
        _serve("--realtime-url", "https://example.invalid/realtime"), "not a ws:// or wss:// URL"
    )


def test_port_in_use(engine: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, 0))
        port = taken.getsockname()[1]
        result = _serve("--sip-host", HOST, "--sip-port", str(port), *engine_args(engine))
    _assert_one_clear_error(result, f"cannot start SIP on {HOST}:{port}: Address already in use")


@pytest.mark.parametrize("flag", ["--dialect", "--log-format"])
def test_bad_choice_is_a_usage_error(flag: str) -> None:
    result = _serve(flag, "nonsense")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_a_named_env_file_that_does_not_exist_stops_the_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "serve", "--env-file", str(tmp_path / "typo.env")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    _assert_one_clear_error(result, "env file not found")


@pytest.mark.parametrize("value", ["80", "5000-4000", "x"])
def test_bad_rtp_ports_are_a_usage_error(value: str) -> None:
    result = _serve("--rtp-port", value)
    assert result.returncode == 2 and "--rtp-port" in result.stderr


async def test_rtp_port_and_log_level_flags_take_effect(engine: str, tmp_path: Path) -> None:
    from agent.local.server import LocalRealtimeServer
    from testbed.peers import AgentProcess, RtpPeer, free_port, free_rtp_port, run_sipp

    first = free_rtp_port(span=8)
    async with LocalRealtimeServer("127.0.0.1", 0) as server:
        agent = AgentProcess(
            free_port(),
            ["--realtime-url", server.url, "--rtp-port", f"{first}-{first + 7}",
             "--log-level", "debug", *engine_args(engine)],
        )  # fmt: skip
        await agent.start()
        peer = await RtpPeer.open()
        try:
            result = await run_sipp(
                "uac_peer.xml", agent.sip_port, keys=peer.sipp_keys(),
                fill={"call_ms": "1000"}, workdir=tmp_path,
            )  # fmt: skip
            assert result.returncode == 0, result.output[-2000:]
            # The agent's RTP came from the range given on the command line ...
            _, port = await peer.remote
            assert first <= port <= first + 7
            # ... and debug lines are written at --log-level debug.
            assert any(line["level"] == "debug" for line in agent.lines)
        finally:
            peer.close()
            assert await agent.stop() == 0


def _call(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "call", "--env-file", os.devnull, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["030123456"], "to: '030123456' is neither an E.164 number"),
        (["+4930123456"], "account: +4930123456 is a phone number: name the [[sip.accounts]]"),
        (["sip:bob@pbx", "--var", "novalue"], "--var 'novalue': expected NAME=VALUE"),
        (["sip:bob@pbx", "--profile", "nope"], "profile: 'nope' is not a [profiles] name"),
        (["sip:bob@pbx", "--ring-timeout", "0"], "ring_timeout_s: must be between 1 and 300"),
    ],
)
def test_a_bad_call_is_a_usage_error_before_anything_starts(args: list[str], words: str) -> None:
    _assert_one_clear_error(_call(*args), words)
