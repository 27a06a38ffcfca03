"""End to end: the agent registers to a real Kamailio registrar (auth_db over db_text) with
digest auth, takes the calls Kamailio routes to it, and survives Kamailio restarting.

Kamailio, the agent and SIPp all run on 127.0.0.1; the agent's ``sip.allow_from`` is empty,
so the only calls it takes are those from its registrar's address. Every test runs on both
SIP engines.
"""

from __future__ import annotations

import io
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.audio.levels import rms_dbfs
from agent.check import run_check
from agent.config import load_settings
from testbed.certs import make_certificates
from testbed.http_probe import http_get, sample, scrape
from testbed.kamailio import KAMAILIO, Registrar
from testbed.peers import (
    AgentProcess,
    RtpPeer,
    engine_args,
    free_port,
    run_sipp,
    talk_then_pause,
)
from testbed.recording import RecordingServer

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.timeout(120),
    pytest.mark.skipif(KAMAILIO is None, reason="kamailio not installed (apt-get kamailio)"),
]

PASSWORD = "agent-secret"
#: The greeting of the profile that calls coming in on the account get.
TRUNK_GREETING = "Thank the caller for calling the trunk line."


@pytest.fixture
async def registrar() -> AsyncIterator[Registrar]:
    kamailio = Registrar(free_port(), {"agent": PASSWORD})
    await kamailio.start()
    try:
        yield kamailio
    finally:
        await kamailio.stop()


def _profile(registrar: Registrar, tmp_path: Path, engine: str, expires_s: int = 10) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[sip]\nengine = "{engine}"\nallow_from = []\n\n[[sip.accounts]]\n'
        f'name = "kam"\nregistrar = "sip:127.0.0.1:{registrar.port}"\nusername = "agent"\n'
        f'password_env = "KAM_PASSWORD"\nexpires_s = {expires_s}\n'
        # SRTP when offered: the plain-RTP calls through Kamailio still connect.
        'srtp = "optional"\n'
        '\n[[routes]]\naccount = "kam"\nprofile = "trunk"\n'
        f'\n[profiles.trunk]\ngreeting = "{TRUNK_GREETING}"\n'
    )
    return config


async def _agent(engine: str, url: str, config: Path, password: str) -> AgentProcess:
    agent = AgentProcess(
        free_port(),
        [*engine_args(engine), "--realtime-url", url, "--config", str(config)],
        env={"KAM_PASSWORD": password},
    )
    await agent.start()
    return agent


async def _call_through(registrar: Registrar, tmp_path: Path) -> tuple[int, RtpPeer]:
    """A SIPp call to sip:agent@ the registrar, relayed to the agent: (SIPp's status, the
    caller's RTP peer with what it heard)."""
    peer = await RtpPeer.open()
    peer.talk(talk_then_pause(1.2, 0.6), "PCMU")
    result = await run_sipp(
        "uac_via_proxy.xml", registrar.port, keys=peer.sipp_keys("PCMU"),
        fill={"call_ms": "3000"}, workdir=tmp_path, timeout_s=30,
    )  # fmt: skip
    peer.close()
    return result.returncode, peer


async def test_registers_takes_a_routed_call_and_survives_a_registrar_restart(
    engine: str, registrar: Registrar, local_server: RecordingServer, tmp_path: Path
) -> None:
    agent = await _agent(engine, local_server.url, _profile(registrar, tmp_path, engine), PASSWORD)
    try:
        [line] = await agent.wait_for("sip_registration", 10)
        assert (line["account"], line["state"], line["expires_s"]) == ("kam", "registered", 10)
        await registrar.wait_for("registered sip:agent@127.0.0.1", 5)
        status, body = await http_get(f"{agent.http_url}/readyz")
        assert status == 200 and '"accounts_registered": true' in body
        metrics = await scrape(agent.http_url)
        assert sample(metrics, "voice_agent_registration_up", account="kam") == 1

        code, peer = await _call_through(registrar, tmp_path)
        assert code == 0
        assert len(local_server.sessions) == 1
        session = local_server.sessions[0]
        # Routed by the account it came in on (`[[routes]] account = "kam"`), to the number
        # dialed (the To user: the Request-URI names the registered contact).
        [routed] = agent.events("call_routed")
        assert (routed["account"], routed["profile"], routed["dialed"]) == ("kam", "trunk", "agent")
        greeting = next(e for e in session.received if e["type"] == "response.create")
        assert greeting["response"]["instructions"] == TRUNK_GREETING
        assert len(session.input_audio) / 2 / 24000 > 2.0, "caller audio never reached the model"
        assert rms_dbfs(bytes(session.input_audio)) > -32
        heard = peer.audio()
        assert len(heard) / 2 / 8000 > 2.0 and rms_dbfs(heard) > -37, "agent audio is silent"
        await agent.wait_for("call_finished", 10)

        # Kamailio restarts with an empty location table (usrloc db_mode 0); the agent's next
        # refresh (5 s before the 10 s expiry) registers it again, and calls route again.
        await registrar.stop()
        restarted = Registrar(registrar.port, registrar.users, directory=registrar.directory)
        await restarted.start()
        try:
            await restarted.wait_for("registered sip:agent@127.0.0.1", 12)
            code, _ = await _call_through(restarted, tmp_path)
            assert code == 0
            assert len(local_server.sessions) == 2
            # On shutdown it unregisters, and Kamailio confirms it (one line for the change).
            assert await agent.stop() == 0
            states = [line["state"] for line in agent.events("sip_registration")]
            assert states == ["registered", "unregistered"]
        finally:
            await restarted.stop()
    finally:
        assert await agent.stop() == 0


async def test_a_wrong_password_is_one_clear_error_and_is_retried(
    engine: str, registrar: Registrar, local_server: RecordingServer, tmp_path: Path
) -> None:
    config = _profile(registrar, tmp_path, engine)
    agent = await _agent(engine, local_server.url, config, "wrong")
    try:
        [line] = await agent.wait_for("sip_registration", 10)
        assert line["state"] == "failed" and line["level"] == "warning"
        assert line["reason"] == "bad credentials (403 Forbidden)"
        assert line["retry_in_s"] == 2
        # Retried with backoff (2 s, then 4 s): Kamailio refuses the second attempt too; the
        # agent logs no second line for the same state.
        await registrar.wait_for("REGISTER auth failed", 6, count=2)
        assert len(agent.events("sip_registration")) == 1
        # ... nor does the SIP stack add lines of its own about it.
        assert [line for line in agent.lines if "Forbidden" in str(line)] == [line], agent.lines
        # The call finds nobody registered: Kamailio answers 404, the agent sees nothing.
        code, _ = await _call_through(registrar, tmp_path)
        assert code != 0
        assert local_server.sessions == []
    finally:
        assert await agent.stop() == 0

    # `voice-agent check` names the failure.
    out = io.StringIO()
    settings = load_settings(config, environ={"KAM_PASSWORD": "wrong"})
    assert not await run_check(settings, out)
    assert f"account:  kam (sip:127.0.0.1:{registrar.port}): FAILED: bad credentials" in (
        out.getvalue()
    )
    out = io.StringIO()
    settings = load_settings(config, environ={"KAM_PASSWORD": PASSWORD})
    assert await run_check(settings, out), out.getvalue()
    assert "registered, expires in 10 s" in out.getvalue()


async def test_check_tells_an_unknown_registrar_host_from_a_bad_password(
    engine: str, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[sip]\nengine = "{engine}"\n[[sip.accounts]]\nname = "t"\n'
        'registrar = "sip:no-such-host.invalid"\n'
        'username = "agent"\npassword_env = "P"\n'
    )
    out = io.StringIO()
    assert not await run_check(load_settings(config, environ={"P": "x"}), out)
    assert "FAILED: DNS (no-such-host.invalid does not resolve)" in out.getvalue()
    print(out.getvalue(), file=sys.stderr)


async def test_registers_over_tls_verifying_the_registrar_and_takes_a_call_over_it(
    engine: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path / "certs")
    stranger_ca = make_certificates(tmp_path / "other", name="other-ca")
    kamailio = Registrar(
        free_port(), {"agent": PASSWORD}, tls_port=free_port(socket.SOCK_STREAM),
        tls_cert=certs.cert, tls_key=certs.key,
    )  # fmt: skip
    await kamailio.start()

    def profile(ca: Path, name: str, scheme: str = "sip") -> Path:
        config = tmp_path / f"{name}.toml"
        config.write_text(
            f'[sip]\nengine = "{engine}"\nallow_from = []\n\n'
            f"[sip.tls]\nport = {free_port(socket.SOCK_STREAM)}\n"
            f'ca_file = "{ca}"\ncert_file = "{certs.cert}"\nkey_file = "{certs.key}"\n\n'
            '[[sip.accounts]]\nname = "kam"\n'
            f'registrar = "{scheme}:127.0.0.1:{kamailio.tls_port}"\ntransport = "tls"\n'
            'username = "agent"\npassword_env = "KAM_PASSWORD"\nexpires_s = 60\n'
        )
        return config

    try:
        # A registrar whose certificate our CA file does not vouch for: a TLS failure.
        agent = await _agent(
            engine, local_server.url, profile(stranger_ca.ca, "wrong-ca"), PASSWORD
        )
        try:
            [line] = await agent.wait_for("sip_registration", 15)
            assert line["state"] == "failed" and line["reason"].startswith("TLS"), line
        finally:
            assert await agent.stop() == 0

        agent = await _agent(engine, local_server.url, profile(certs.ca, "right-ca"), PASSWORD)
        try:
            [line] = await agent.wait_for("sip_registration", 15)
            assert line["state"] == "registered", line
            await kamailio.wait_for("registered sip:agent@127.0.0.1", 5)
            assert any(";transport=tls>" in contact.lower() for contact in _registers(kamailio)), (
                "the contact is not on TLS"
            )
            # SIPp calls Kamailio over UDP; Kamailio relays over the agent's TLS connection.
            # (sip:, not sips:, URIs: with sips: the agent, like any UA, would answer a caller
            # that is not on TLS all the way "480 SIPS Required".) The ACK and BYE come to
            # our Contact, the TLS listener: that is what the agent's certificate is for.
            code, peer = await _call_through(kamailio, tmp_path)
            assert code == 0, "\n".join(kamailio.lines[-6:] + agent.raw[-6:])
            assert len(local_server.sessions) == 1
            assert len(local_server.sessions[0].input_audio) / 2 / 24000 > 2.0
            assert rms_dbfs(peer.audio()) > -37
        finally:
            assert await agent.stop() == 0

        # A sips: registrar: registered over TLS too (`voice-agent check`, which unregisters).
        out = io.StringIO()
        settings = load_settings(
            profile(certs.ca, "sips", scheme="sips"), environ={"KAM_PASSWORD": PASSWORD}
        )
        assert await run_check(settings, out), out.getvalue()
        assert "account:  kam (sips:127.0.0.1:" in out.getvalue()
        assert "registered, expires in 60 s" in out.getvalue()
    finally:
        await kamailio.stop()


async def test_a_registrar_that_never_answers_and_an_unknown_user_are_told_apart(
    local_server: RecordingServer, tmp_path: Path
) -> None:
    # On the default engine: a "registrar" that swallows every datagram (SIP gives up after
    # its 32 s transaction timeout) and a Kamailio that answers 404 for users it lacks.
    kamailio = Registrar(free_port(), {"agent": PASSWORD}, unknown_user_404=True)
    await kamailio.start()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    accounts = (
        ("nobody", f"sip:127.0.0.1:{kamailio.port}", "nobody"),
        ("silent", f"sip:127.0.0.1:{silent.getsockname()[1]}", "agent"),
    )

    def profile(file: str, *entries: tuple[str, str, str]) -> Path:
        config = tmp_path / f"{file}.toml"
        config.write_text(
            "[sip]\nallow_from = []\n"
            + "".join(
                f'\n[[sip.accounts]]\nname = "{name}"\nregistrar = "{registrar}"\n'
                f'username = "{user}"\npassword_env = "KAM_PASSWORD"\nexpires_s = 60\n'
                for name, registrar, user in entries
            )
        )
        return config

    agent = await _agent("baresip", local_server.url, profile("both", *accounts), PASSWORD)
    try:
        [unknown] = await agent.wait_for("sip_registration", 10)
        assert (unknown["account"], unknown["state"]) == ("nobody", "failed")
        assert unknown["reason"] == "unknown user (404 Not Found)"
        status, body = await http_get(f"{agent.http_url}/readyz")
        assert status == 503 and '"accounts_registered": false' in body
        metrics = await scrape(agent.http_url)
        assert sample(metrics, "voice_agent_registration_up", account="nobody") == 0
        lines = await agent.wait_for("sip_registration", 40, count=2)
        timeout = next(line for line in lines if line["account"] == "silent")
        assert timeout["state"] == "failed" and timeout["reason"].startswith("timeout"), timeout
        assert agent.events("call_finished") == []
        # `voice-agent check` names it too (the 404 account alone: no 32 s to wait).
        out = io.StringIO()
        settings = load_settings(profile("nobody", accounts[0]), environ={"KAM_PASSWORD": "x"})
        assert not await run_check(settings, out)
        assert "account:  nobody (sip:127.0.0.1:" in out.getvalue()
        assert "FAILED: unknown user (404 Not Found)" in out.getvalue()
    finally:
        silent.close()
        assert await agent.stop() == 0
        await kamailio.stop()
    # The 404 is retried on the backoff (2 s after the first failure).
    assert kamailio.count("REGISTER unknown user sip:nobody@127.0.0.1") >= 2


async def test_registers_over_tcp(engine: str, tmp_path: Path) -> None:
    kamailio = Registrar(free_port(), {"agent": PASSWORD}, tcp_port=free_port(socket.SOCK_STREAM))
    await kamailio.start()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[sip]\nengine = "{engine}"\n\n[[sip.accounts]]\nname = "kam"\n'
        f'registrar = "sip:127.0.0.1:{kamailio.tcp_port}"\ntransport = "tcp"\n'
        'username = "agent"\npassword_env = "KAM_PASSWORD"\nexpires_s = 60\n'
    )
    try:
        out = io.StringIO()
        settings = load_settings(config, environ={"KAM_PASSWORD": PASSWORD})
        assert await run_check(settings, out), out.getvalue()
        assert "registered, expires in 60 s" in out.getvalue()
        registered = _registers(kamailio)
        assert registered and "transport=tcp" in registered[0].lower(), kamailio.lines[-5:]
    finally:
        await kamailio.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_the_registered_contact_names_the_public_host(
    engine: str, transport: str, local_server: RecordingServer, tmp_path: Path
) -> None:
    """Behind 1:1 NAT the registrar must store ``sip.public_host``, not the bound address,
    over every transport; and the agent still knows the lifetime Kamailio granted (3600 s,
    its max_expires, for the 7200 asked), which it reads from its own binding in the 200 OK.
    On shutdown the binding goes: the un-REGISTER names the same public Contact."""
    certs = make_certificates(tmp_path / "certs")
    stream = free_port(socket.SOCK_STREAM)
    kamailio = Registrar(
        free_port(), {"agent": PASSWORD},
        tcp_port=stream if transport == "tcp" else None,
        tls_port=stream if transport == "tls" else None,
        tls_cert=certs.cert, tls_key=certs.key,
    )  # fmt: skip
    await kamailio.start()
    registrar_port = kamailio.port if transport == "udp" else stream
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[sip]\nengine = "{engine}"\nallow_from = []\n\n'
        f'[sip.tls]\nca_file = "{certs.ca}"\n\n[[sip.accounts]]\nname = "kam"\n'
        f'registrar = "sip:127.0.0.1:{registrar_port}"\ntransport = "{transport}"\n'
        'username = "agent"\npassword_env = "KAM_PASSWORD"\nexpires_s = 7200\n'
    )
    agent = AgentProcess(
        free_port(),
        [*engine_args(engine), "--realtime-url", local_server.url, "--config", str(config),
         "--sip-public-host", "127.0.0.5"],
        env={"KAM_PASSWORD": PASSWORD},
    )  # fmt: skip
    await agent.start()
    try:
        try:
            [line] = await agent.wait_for("sip_registration", 15)
            assert (line["state"], line["expires_s"]) == ("registered", 3600), line
            await kamailio.wait_for("registered sip:agent@", 5)
            [saved] = _registers(kamailio)
            assert re.match(r"<sip:agent[^@]*@127\.0\.0\.5:", saved), saved
            if transport == "udp":
                assert f"@127.0.0.5:{agent.sip_port}" in saved, saved
            else:
                assert f";transport={transport}>" in saved.lower(), saved
            assert not agent.events("sip_register_contact_error"), agent.raw[-5:]
        finally:
            assert await agent.stop() == 0
        await kamailio.wait_for("no binding left for sip:agent@", 5)
    finally:
        await kamailio.stop()


def _registers(kamailio: Registrar) -> list[str]:
    """Kamailio's log line for each REGISTER it accepted (with its Contact)."""
    return [
        line.split(" contact ", 1)[1] for line in kamailio.lines if "registered sip:agent@" in line
    ]
