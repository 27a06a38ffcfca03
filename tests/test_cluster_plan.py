"""The cluster's plan (ports, RTP slices, allowlist) and the front door's files, without I/O."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from agent.cluster.frontdoor import GEN_DISPATCHER_LIST, KAMAILIO_CFG, frontdoor_command
from agent.cluster.plan import plan_cluster
from agent.config import ConfigError, HttpSettings, Settings, SipSettings
from testbed.peers import KAMAILIO


def _settings(**sip: int) -> Settings:
    return Settings(sip=SipSettings(**sip), http=HttpSettings(port=8060))


def test_each_worker_gets_its_own_ports_and_rtp_slice() -> None:
    plan = plan_cluster(_settings(max_calls=4), 3, "10.0.0.5", 5060, ("203.0.113.0/24",))
    assert [w.sip_port for w in plan.workers] == [5061, 5062, 5063]
    assert [w.http_port for w in plan.workers] == [8060, 8061, 8062]
    # 4000-4199 in three even slices of 66 ports, none overlapping.
    assert [w.rtp_ports for w in plan.workers] == ["4000-4065", "4066-4131", "4132-4197"]
    assert plan.agent_addresses == ["10.0.0.5:5061/4", "10.0.0.5:5062/4", "10.0.0.5:5063/4"]


def test_plans_that_cannot_work_are_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="fewer than 4 per call"):
        plan_cluster(_settings(rtp_port_range=24, max_calls=4), 2, "127.0.0.1", 5060, ())
    with pytest.raises(ConfigError, match="wildcard"):
        plan_cluster(_settings(), 2, "0.0.0.0", 5060, ())
    with pytest.raises(ConfigError, match="--allow"):
        plan_cluster(_settings(), 2, "127.0.0.1", 5060, ("example.com",))
    with pytest.raises(ConfigError, match="at least one"):
        plan_cluster(_settings(), 0, "127.0.0.1", 5060, ())
    free_http = dataclasses.replace(_settings(), http=HttpSettings(port=0))
    assert {w.http_port for w in plan_cluster(free_http, 2, "127.0.0.1", 5060, ()).workers} == {0}


@pytest.mark.skipif(KAMAILIO is None, reason="kamailio not installed (apt-get install kamailio)")
def test_the_front_door_starts_from_the_plan_the_way_a_deployment_does(tmp_path: Path) -> None:
    plan = plan_cluster(_settings(max_calls=2), 2, "127.0.0.1", 5060, ("127.0.0.1/8", "192.0.2.7"))
    command, env = frontdoor_command(plan, tmp_path)
    # -c: write the files and check the configuration with them, then exit.
    done = subprocess.run(
        [*command, "-c"], env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listed = (tmp_path / "dispatcher.list").read_text().splitlines()
    assert [line for line in listed if line[:1].isdigit()] == [
        "1 sip:127.0.0.1:5061 0 0 duid=agent-127.0.0.1-5061;maxload=2;weight=50",
        "1 sip:127.0.0.1:5062 0 0 duid=agent-127.0.0.1-5062;maxload=2;weight=50",
    ]
    allowed = (tmp_path / "address.list").read_text().splitlines()
    assert [line for line in allowed if line[:1].isdigit()] == [
        "1 127.0.0.0 8 0 allow-1",
        "1 192.0.2.7 32 0 allow-2",
    ]


def test_gen_dispatcher_list_refuses_what_kamailio_could_not_use() -> None:
    for bad in ("agents.local:5060", "10.0.0.1", "10.0.0.1:5060/x"):
        done = subprocess.run(
            ["sh", str(GEN_DISPATCHER_LIST), bad], capture_output=True, text=True, check=False
        )
        assert done.returncode == 2 and bad in done.stderr


def test_dispatcher_from_dns_writes_the_names_addresses(tmp_path: Path) -> None:
    script = GEN_DISPATCHER_LIST.parent / "dispatcher-from-dns.sh"
    out = tmp_path / "dispatcher.list"
    subprocess.run(["sh", str(script), "--once", "localhost", "5070", "3", str(out)], check=True)
    assert "1 sip:127.0.0.1:5070 0 0 duid=agent-127.0.0.1-5070;maxload=3" in out.read_text()
    subprocess.run(
        ["sh", str(script), "--once", "no-such.invalid", "5070", "3", str(out)], check=True
    )
    assert not [line for line in out.read_text().splitlines() if line[:1].isdigit()]


@pytest.mark.skipif(KAMAILIO is None, reason="kamailio not installed (apt-get install kamailio)")
@pytest.mark.parametrize("defines", [[], ["-A", "WITH_TLS"]], ids=["shipped", "with-tls"])
def test_kamailio_cfg_passes_the_syntax_check_as_shipped(defines: list[str]) -> None:
    assert KAMAILIO is not None
    if defines and not list(Path("/usr/lib").glob("*/kamailio/modules/tls.so")):
        pytest.skip("TLS needs kamailio-tls-modules")
    done = subprocess.run(
        [KAMAILIO, "-c", "-f", str(KAMAILIO_CFG), *defines],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
