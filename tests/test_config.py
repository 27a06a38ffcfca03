from __future__ import annotations

import dataclasses
import re
import tomllib
import wave
from pathlib import Path

import pytest

from agent.config import DEFAULT_CONFIG_PATH, ConfigError, Settings, load_settings


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return load_settings(path, environ=environ or {})


def test_values_are_read_and_typed(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        '[sip]\nport = 5070\ncodecs = ["PCMA"]\n[agent.turn_detection]\nthreshold = 1\n',
    )
    assert settings.sip.port == 5070
    assert settings.sip.codecs == ("PCMA",)
    assert settings.agent.turn_detection.threshold == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sip]\nprot = 5060\n", "unknown key 'prot'"),
        ("[sipp]\n", "unknown key 'sipp'"),
        ('[sip]\nport = "5060"\n', "sip.port: expected an integer"),
        ('[sip]\nengine = "pjsip"\nmax_calls = 5\n', "sip.max_calls: 5 is outside 1..4"),
        ("[sip]\nmax_calls = 1001\nrtp_port_range = 4000\n", "1001 is outside 1..1000"),
        ('[sip]\nengine = "linphone"\n', "sip.engine: 'linphone' is not one of"),
        ('[sip]\ncodecs = ["opus"]\n', "'opus' is not supported"),
        ('[realtime]\nprovider = "gemini"\n', "realtime.provider: 'gemini' is not one of"),
        ("[sip\n", "invalid TOML"),
        ('[secrets]\nopenai_api_key = "sk-x"\n', "secrets belong in the environment"),
        ('[[routes]]\ndialed = "+1*"\nprofile = "nope"\n', "routes[0].profile: 'nope'"),
        ('[[routes]]\nprofile = "p"\n[profiles.p]\n', "routes[0]: set at least one"),
        ('default_profile = "x"\n', "default_profile: 'x' is not"),
        ("[profiles.p]\nvoyce = 1\n", "[profiles.p] unknown key 'voyce'"),
        ('[profiles.p.tools]\nbuiltin = ["x"]\n', "tools.builtin: 'x'"),
        ('[sip]\nallow_from = ["10.0.0.0/33"]\n', "sip.allow_from[0]"),
        ('[sip]\nnat_networks = ["192.168.0.0/33"]\n', "sip.nat_networks: '192.168.0.0/33'"),
        ("[audio]\nloop_nice = 5\n", "audio.loop_nice: must be between -20 and 0"),
        ("[sip]\nmax_loop_busy = 0\n", "sip.max_loop_busy: must be above 0 and at most 1"),
        ("[sip]\nmax_loop_busy = 1.5\n", "sip.max_loop_busy: must be above 0 and at most 1"),
        (
            '[[sip.accounts]]\nname = "t"\nregistrar = "sip:h"\nusername = "u"\n'
            'password_env = "NOT_SET_ANYWHERE"\n',
            "NOT_SET_ANYWHERE is not set",
        ),
        (
            '[[sip.accounts]]\nname = "t"\nregistrar = "sip:h"\nusername = "u"\n'
            'password_env = "P"\ntransport = "sctp"\n',
            "sip.accounts[0].transport: 'sctp'",
        ),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(tmp_path, text)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_secrets_come_from_the_environment_and_never_print(tmp_path: Path) -> None:
    settings = _load(tmp_path, "", {"OPENAI_API_KEY": "sk-test-0123456789"})
    assert settings.secrets.openai_api_key == "sk-test-0123456789"
    assert "sk-test" not in repr(settings)
    assert "sk-test" not in repr(settings.secrets)


def test_dotenv_file_fills_unset_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("AZURE_OPENAI_ENDPOINT=https://example.openai.azure.com\n")
    config = tmp_path / "agent.toml"
    config.write_text("")
    settings = load_settings(config, env_file=env_file)
    assert settings.secrets.azure_endpoint == "https://example.openai.azure.com"


def _fields(obj: object, prefix: str = "") -> dict[str, object]:
    """Every setting of a settings object, by dotted name."""
    found: dict[str, object] = {}
    for item in dataclasses.fields(obj):  # type: ignore[arg-type]
        if not item.repr:
            continue  # the secrets: from the environment, never from a file
        value = getattr(obj, item.name)
        if dataclasses.is_dataclass(value):
            found |= _fields(value, f"{prefix}{item.name}.")
        else:
            found[f"{prefix}{item.name}"] = value
    return found


#: Arrays of tables: their default is none, and the shipped file shows them as commented
#: examples (an empty `custom = []` would break a profile that adds a [[tools.custom]]).
_ARRAYS_OF_TABLES = {
    "tools.custom",
    "tools.mcp",
    "tools.server_mcp",
    "sip.accounts",
    "sip.peers",
    "routes",
}
#: Tables of tables, shown as commented examples the same way.
_TABLES_OF_TABLES = {"profiles"}


def test_the_shipped_profile_holds_exactly_the_code_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    shipped = _fields(load_settings(DEFAULT_CONFIG_PATH, environ={}))
    defaults = _fields(load_settings(empty, environ={}))
    assert defaults == _fields(Settings())
    assert shipped == defaults
    # ... and it writes every key out, so it documents them all.
    text = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    written: set[str] = set()

    def walk(table: dict[str, object], prefix: str) -> None:
        for key, value in table.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and not (
                name in defaults and isinstance(defaults[name], dict)
            ):
                walk(value, f"{name}.")
            else:
                written.add(name)

    walk(text, "")
    missing = set(defaults) - written - _ARRAYS_OF_TABLES - _TABLES_OF_TABLES
    assert not missing, f"keys the shipped profile leaves out: {sorted(missing)}"
    assert all(defaults[name] == () for name in _ARRAYS_OF_TABLES)
    assert all(defaults[name] == {} for name in _TABLES_OF_TABLES)
    body = DEFAULT_CONFIG_PATH.read_text()
    for name in sorted(_ARRAYS_OF_TABLES):
        assert f"# [[{name}]]" in body
    assert "# [profiles.sales]" in body


def test_a_named_env_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="env file not found"):
        load_settings(env_file=tmp_path / "typo.env")


def test_unknown_tables_never_offer_the_secrets_table(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[sipp]\nport = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert "unknown key 'sipp'" in str(caught.value)
    assert "secrets" not in str(caught.value)


def test_the_echo_guard_keys_are_read_as_their_new_names(tmp_path: Path) -> None:
    settings = _load(tmp_path, "[agent]\necho_guard_ms = 120\necho_guard_dbfs = -35.0\n")
    assert (settings.agent.min_barge_in_ms, settings.agent.min_barge_in_dbfs) == (120, -35.0)
    with pytest.raises(ConfigError, match="set only one of them"):
        _load(tmp_path, "[agent]\necho_guard_ms = 120\nmin_barge_in_ms = 100\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agent]\nsilence_hangup_s = 0.5\n", "agent.silence_hangup_s"),
        ("[agent]\nmax_call_s = 1\n", "agent.max_call_s"),
        ('[tools]\nfiller = "music"\n', "tools.filler"),
        ("[tools]\nfiller_after_ms = -1\n", "tools.filler_after_ms"),
    ],
)
def test_bad_experience_settings_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"not a wave file at all", "is not a readable WAV file"),
        ("8bit", "must be 16-bit PCM"),
    ],
)
def test_music_on_hold_is_checked_at_start(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "music.wav"
    if content == "8bit":
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(1)
            wav.setframerate(8000)
            wav.writeframes(bytes(800))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    for where in ("[tools]", "[profiles.sales]\n[profiles.sales.tools]"):
        with pytest.raises(ConfigError, match=f"tools.music_on_hold: .*{message}"):
            _load(tmp_path, f'{where}\nmusic_on_hold = "{path}"\n')


def test_music_on_hold_of_any_common_format_loads(tmp_path: Path) -> None:
    path = tmp_path / "music.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(bytes(44100 * 4))
    settings = _load(tmp_path, f'[tools]\nmusic_on_hold = "{path}"\ntransfer_hold = true\n')
    assert settings.tools.music_on_hold == str(path) and settings.tools.transfer_hold


def test_answering_machine_detection_is_read_and_a_profile_has_its_own_message(
    tmp_path: Path,
) -> None:
    settings = _load(
        tmp_path,
        '[outbound.amd]\non_machine = "hangup"\nmax_detect_ms = 4000\n'
        '[profiles.clinic]\nvoicemail_instructions = "Remind {dialed} of the appointment."\n',
    )
    assert settings.outbound.amd.on_machine == "hangup"
    assert settings.outbound.amd.max_detect_ms == 4000
    assert settings.outbound.amd.enabled
    assert settings.profiles["clinic"].agent.voicemail_instructions.startswith("Remind")
    assert settings.agent.voicemail_instructions == Settings().agent.voicemail_instructions


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[outbound.amd]\non_machine = "talk"\n', "outbound.amd.on_machine: 'talk' is not one"),
        ("[outbound.amd]\nmax_detect_ms = 500\n", r"outbound.amd.max_detect_ms: 500 is outside"),
        ("[outbound.amd]\nspeech_dbfs = 3.0\n", "outbound.amd.speech_dbfs"),
        ("[outbound.amd]\nbeep_min_ms = 10\n", "outbound.amd.beep_min_ms"),
        ("[outbound.amd]\nbeap_wait_ms = 10\n", "unknown key 'beap_wait_ms'"),
        ('[agent]\nvoicemail_instructions = " "\n', "agent.voicemail_instructions: empty"),
        (
            '[profiles.p]\nvoicemail_instructions = ""\n',
            "profiles.p.voicemail_instructions: empty",
        ),
    ],
)
def test_bad_answering_machine_settings_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_no_message_is_needed_when_machines_are_hung_up_on(tmp_path: Path) -> None:
    text = '[outbound.amd]\non_machine = "hangup"\n[agent]\nvoicemail_instructions = ""\n'
    assert _load(tmp_path, text).agent.voicemail_instructions == ""
