"""Registration state, failure kinds and backoff (no SIP: the engines report to this)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import structlog

from agent.config import AccountSettings, load_settings
from agent.sip.baresip.accounts import account_aor, failure
from agent.sip.callers import RegistrarSources
from agent.sip.registration import (
    BACKOFF_S,
    Registrations,
    failure_kind,
    registrar_host,
)


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        (401, "Unauthorized", "bad credentials"),
        (403, "Forbidden", "bad credentials"),
        (407, "Proxy Authentication Required", "bad credentials"),
        (404, "Not Found", "unknown user"),
        (408, "Request Timeout", "timeout"),
        (502, "Unresolvable destination (PJLIB_UTIL_EDNSNOANSWERREC)", "DNS"),
        (503, "TLS connect() error: certificate verify failed", "TLS"),
        (500, "Server Internal Error", "error"),
    ],
)
def test_failures_are_told_apart(code: int, reason: str, kind: str) -> None:
    assert failure_kind(code, reason) == kind


def test_registrar_uris() -> None:
    assert registrar_host("sip:sip.example.net") == ("sip.example.net", None)
    assert registrar_host("sip:10.0.0.5:5080;transport=tcp") == ("10.0.0.5", 5080)
    assert registrar_host("sips:user@[2001:db8::1]:5061") == ("2001:db8::1", 5061)


def test_one_line_per_state_change_and_a_growing_backoff(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        '[[sip.accounts]]\nname = "t"\nregistrar = "sip:h"\nusername = "u"\npassword_env = "P"\n'
    )
    settings = load_settings(config, environ={"P": "pw"})
    sources = RegistrarSources()
    registrations = Registrations(settings, sources)
    assert registrations.accounts["t"].password == "pw"
    assert "pw" not in repr(registrations.accounts["t"])
    registrations.registrar_resolved("t", {"192.0.2.1"})
    assert sources.account_of("192.0.2.1") == "t"
    with structlog.testing.capture_logs() as logs:
        delays = [registrations.failed("t", "bad credentials", 403, "Forbidden") for _ in range(10)]
        registrations.registered("t", 300)
        registrations.registered("t", 300)  # a refresh: no new line
        registrations.unregistered("t")
    assert delays == [*BACKOFF_S, BACKOFF_S[-1], BACKOFF_S[-1]]
    assert [(line["state"], line["log_level"]) for line in logs] == [
        ("failed", "warning"),
        ("registered", "info"),
        ("unregistered", "info"),
    ]
    assert logs[0]["reason"] == "bad credentials (403 Forbidden)"
    # After a success the backoff starts over.
    assert registrations.failed("t", "timeout", 408, "Request Timeout") == BACKOFF_S[0]


def test_readiness_waits_for_every_account_to_be_registered(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        '[[sip.accounts]]\nname = "t"\nregistrar = "sip:h"\nusername = "u"\npassword_env = "P"\n'
    )
    registrations = Registrations(load_settings(config, environ={"P": "pw"}), RegistrarSources())
    assert not registrations.all_registered  # still trying: no dispatcher should send calls
    registrations.registered("t", 300)
    assert registrations.all_registered
    registrations.failed("t", "timeout", 408, "Request Timeout")
    assert not registrations.all_registered
    assert Registrations(load_settings(None, environ={}), RegistrarSources()).all_registered


def test_baresip_reads_its_failure_events_like_the_registrar_meant_them() -> None:
    udp = AccountSettings(name="t", registrar="sip:h", username="u", password_env="P")
    tls = dataclasses.replace(udp, transport="tls")
    assert failure(udp, "403 Forbidden") == ("bad credentials", 403, "Forbidden")
    assert failure(udp, "404 Not Found") == ("unknown user", 404, "Not Found")
    assert failure(udp, "Connection timed out [110]") == (
        "timeout",
        0,
        "Connection timed out [110]",
    )
    # libre's failed TLS handshake is EPROTO: on a TLS account that is the TLS failure.
    assert failure(tls, "Protocol error [71]")[0] == "TLS"
    assert failure(udp, "Protocol error [71]")[0] == "error"


def test_baresip_accounts_register_to_the_registrar_with_the_account_srtp() -> None:
    account = AccountSettings(
        name="t", registrar="sip:10.0.0.5:5080", username="agent", password_env="P",
        transport="tcp", expires_s=120, srtp="mandatory",
    )  # fmt: skip
    aor = account_aor(account, "pw", ("pcmu",), "off")
    assert aor.startswith("<sip:agent@10.0.0.5:5080;transport=tcp>;")
    assert "regint=120" in aor and "mediaenc=srtp-mand" in aor and 'auth_pass="pw"' in aor
    assert "mediaenc" not in account_aor(dataclasses.replace(account, srtp=""), "", (), "off")
    # libre sends nothing to a sips: URI: the AOR stays sips:, the route is sip: over TLS.
    sips = dataclasses.replace(account, registrar="sips:[2001:db8::1]", transport="tls", srtp="")
    aor = account_aor(sips, "", (), "optional")
    assert aor.startswith("<sips:agent@[2001:db8::1];transport=tls>;")
    assert 'outbound="sip:[2001:db8::1];transport=tls"' in aor and "mediaenc=srtp;" in aor + ";"
    with pytest.raises(ValueError):
        account_aor(account, 'pass"word', (), "off")  # baresip cannot quote it
