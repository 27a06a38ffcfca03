"""The command line: bad configuration exits 2 with one clear line, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import HOST, REPO


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


def test_missing_file(tmp_path: Path) -> None:
    _assert_one_clear_error(
        _serve("--config", str(tmp_path / "absent.toml")), "config file not found"
    )


def test_bad_url() -> None:
    _assert_one_clear_error(
        _serve("--realtime-url", "https://example.invalid/realtime"), "not a ws:// or wss:// URL"
    )


def test_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, 0))
        port = taken.getsockname()[1]
        result = _serve("--sip-host", HOST, "--sip-port", str(port))
    _assert_one_clear_error(result, f"cannot start SIP on {HOST}:{port}: Address already in use")


@pytest.mark.parametrize("flag", ["--dialect", "--log-format"])
def test_bad_choice_is_a_usage_error(flag: str) -> None:
    result = _serve(flag, "nonsense")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
