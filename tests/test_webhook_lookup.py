"""The pre-call lookup's answer, its profiles and variables, and the [webhook] settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_settings
from agent.realtime.session_config import fill_variables, session_spec
from agent.webhook.lookup import CallLookup, LookupFailed, LookupResult, parse_answer
from agent.webhook.signing import verify
from testbed.webhook_receiver import Reply, WebhookReceiver, json_reply

PROFILES = ("vip", "spanish")


def test_an_answer_may_pick_a_configured_profile_and_give_variables() -> None:
    answer = b'{"profile": "vip", "variables": {"name": "Ada", "tier": 3}, "extra": true}'
    assert parse_answer(answer, PROFILES) == LookupResult("vip", {"name": "Ada", "tier": "3"})
    assert parse_answer(b"{}", PROFILES) == LookupResult()
    assert parse_answer(b'{"profile": null}', PROFILES) == LookupResult()


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"profile": "root"}', "'root' is not configured"),
        (b'{"profile": 3}', "not a string"),
        (b'{"variables": []}', "not a JSON object"),
        (b'{"variables": {"bad name": "x"}}', "not a simple name"),
        (b'{"variables": {"x": {"y": 1}}}', "not a string or a number"),
        (b'{"variables": {"x": true}}', "not a string or a number"),
        (b'{"variables": {"x": "' + b"a" * 2001 + b'"}}', "longer than 2000"),
    ],
)
def test_an_unusable_answer_is_refused_whole(answer: bytes, why: str) -> None:
    with pytest.raises(LookupFailed, match=why):
        parse_answer(answer, PROFILES)


def test_variables_fill_placeholders_in_one_pass() -> None:
    text = "Hello {name}, call {call_id}; {unknown} and {not a name} stay."
    filled = fill_variables(text, {"name": "{call_id}", "call_id": "01X"})
    assert filled == "Hello {call_id}, call 01X; {unknown} and {not a name} stay."


def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_a_named_profile_inherits_what_it_leaves_out_from_agent(tmp_path: Path) -> None:
    config = _profile(
        tmp_path,
        '[agent]\nvoice = "cedar"\ninstructions = "Default for {caller}."\n'
        "[agent.turn_detection]\nsilence_duration_ms = 700\n"
        '[profiles.vip]\ninstructions = "VIP {name}."\n'
        "[profiles.vip.turn_detection]\nthreshold = 0.7\n",
    )
    settings = load_settings(config, environ={})
    vip = settings.profiles["vip"].agent
    assert vip.instructions == "VIP {name}." and vip.voice == "cedar"
    assert vip.turn_detection.threshold == 0.7
    assert vip.turn_detection.silence_duration_ms == 700
    spec = session_spec(vip, call_vars={"name": "Ada"})
    assert spec.instructions == "VIP Ada."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[profiles.vip]\nnoise_reduction = "loud"\n', "profiles.vip.noise_reduction"),
        ("[profiles.vip]\nspeed = 3.0\n", "profiles.vip.speed"),
        ("[profiles.vip]\nvoise = 1\n", "unknown key 'voise'"),
        ('[profiles."a b"]\nvoice = "x"\n', "'a b' is not a simple name"),
        ('[webhook]\nurl = "ftp://x"\nsecret_env = "S"\n', "not an http"),
        ('[webhook]\nurl = "http://127.0.0.1:1/h"\n', "name the environment variable"),
        ('[webhook]\nurl = "http://127.0.0.1:1/h"\nsecret_env = "UNSET_HOOK"\n', "UNSET_HOOK"),
        ('[webhook]\nlookup_url = "http://x/l"\nsecret_env = "UNSET_HOOK"\n', "is unset"),
        (
            '[records]\ndir = ""\n[webhook]\nurl = "http://h/x"\nsecret_env = "S"\n',
            "outbox_dir",
        ),
    ],
)
def test_bad_webhook_and_profile_settings_are_one_clear_error(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_profile(tmp_path, text), environ={"S": "secret-value"})


def test_the_secret_comes_from_the_variable_secret_env_names(tmp_path: Path) -> None:
    config = _profile(tmp_path, '[webhook]\nurl = "https://h/x"\nsecret_env = "HOOK_SECRET"\n')
    settings = load_settings(config, environ={"HOOK_SECRET": " s3cret-value \n"})
    assert settings.secrets.webhook_secret == "s3cret-value"
    assert "s3cret" not in repr(settings)


async def test_the_lookup_request_is_signed_and_answered() -> None:
    async with WebhookReceiver(handler=lambda _r: json_reply({"profile": "vip"})) as receiver:
        settings = load_settings(environ={}).webhook
        from dataclasses import replace

        lookup = CallLookup(replace(settings, lookup_url=receiver.url), "lookup-secret", PROFILES)
        try:
            result = await lookup.ask({"call_id": "01C", "caller": "1001", "dialed": "agent"})
        finally:
            await lookup.close()
    assert result == LookupResult("vip", {})
    (request,) = receiver.requests
    assert request.json() == {
        "type": "call.lookup",
        "call_id": "01C",
        "caller": "1001",
        "dialed": "agent",
    }
    assert verify("lookup-secret", request.body, request.headers["x-voice-agent-signature"])


@pytest.mark.parametrize(
    ("reply", "why"),
    [(Reply(500), "HTTP 500"), (json_reply({}, delay_s=2.0), "no answer within 300 ms")],
)
async def test_a_failing_lookup_says_why(reply: Reply, why: str) -> None:
    from dataclasses import replace

    async with WebhookReceiver(handler=lambda _r: reply) as receiver:
        settings = replace(
            load_settings(environ={}).webhook, lookup_url=receiver.url, lookup_timeout_ms=300
        )
        lookup = CallLookup(settings, "lookup-secret", PROFILES)
        try:
            with pytest.raises(LookupFailed, match=why):
                await lookup.ask({"call_id": "01C"})
        finally:
            await lookup.close()


async def test_a_lookup_nobody_listens_to_fails_fast() -> None:
    from dataclasses import replace

    receiver = WebhookReceiver()  # never started: connections are refused
    settings = replace(load_settings(environ={}).webhook, lookup_url=receiver.url)
    lookup = CallLookup(settings, "lookup-secret", PROFILES)
    try:
        with pytest.raises(LookupFailed, match="request failed"):
            await lookup.ask({"call_id": "01C"})
    finally:
        await lookup.close()


def test_serve_refuses_to_start_when_the_secret_variable_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from agent.cli import main

    monkeypatch.delenv("VA_UNSET_HOOK_SECRET", raising=False)
    config = _profile(
        tmp_path, '[webhook]\nurl = "https://h.example/x"\nsecret_env = "VA_UNSET_HOOK_SECRET"\n'
    )
    assert main(["serve", "--config", str(config), "--env-file", os.devnull]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "voice-agent: error: webhook.secret_env: the environment variable "
        "VA_UNSET_HOOK_SECRET is unset or empty"
    )
