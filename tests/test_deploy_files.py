"""What deploy/ and docker-compose.yml promise, read from the files themselves: the compose
topology, the image, the Kubernetes manifests and the systemd units. Images cannot be built
or pulled here; the same topology runs as processes in tests/test_cluster.py."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli import _parser, _settings
from agent.cluster.frontdoor import KAMAILIO_DIR, RUN_FRONTDOOR
from agent.config import Settings, SipSettings
from testbed.peers import (
    KAMAILIO,
    REPO,
    AgentProcess,
    RtpPeer,
    free_port,
    run_sipp,
    talk_then_pause,
)
from testbed.recording import RecordingServer

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
K8S = REPO / "deploy" / "k8s"
SYSTEMD = REPO / "deploy" / "systemd"
DRAIN_S = SipSettings().drain_timeout_s


def _agent_settings(command: list[str]) -> Settings:
    """What ``voice-agent`` makes of a command line a deployment file gives it: the flags
    exist and the values pass the configuration's checks (no secrets read)."""
    return _settings(_parser().parse_args([*command, "--env-file", os.devnull]))


def _flags(command: list[str]) -> dict[str, str]:
    """``--name=value`` and ``--name value`` arguments as a dict."""
    flags: dict[str, str] = {}
    for i, arg in enumerate(command):
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            flags[name] = value if eq else command[i + 1]
    return flags


def _seconds(duration: str | int) -> float:
    """A compose duration such as ``45s`` or ``1m30s``."""
    if isinstance(duration, int):
        return float(duration)
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, duration
    return int(parts[1] or 0) * 60.0 + int(parts[2] or 0)


def _rtp_range(ports: str) -> range:
    first, last = ports.split("-")
    return range(int(first), int(last) + 1)


# ---- docker-compose.yml ---------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    # The file's ${VAR:-default} values, as compose fills them in with nothing set.
    text = re.sub(r"\$\{[A-Z_]+:?-([^}]*)\}", r"\1", COMPOSE.read_text())
    assert "${" not in text
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def test_compose_runs_the_front_door_the_agents_and_the_backend_on_the_hosts_network() -> None:
    services = _compose()["services"]
    agents = {name: s for name, s in services.items() if name.startswith("agent-")}
    assert {"frontdoor", "backend"} <= set(services) and len(agents) >= 2
    for name, service in services.items():
        # SIP and RTP straight to the host's ports: no NAT rewriting what SDP names.
        assert service["network_mode"] == "host", name
        assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile", name
    assert services["frontdoor"]["build"]["target"] == "frontdoor"

    flags = {name: _flags(service["command"]) for name, service in agents.items()}
    for name, service in agents.items():
        assert service["command"][0] == "serve"
        # Secrets from an env file, never in the compose file or the image.
        assert [f["path"] for f in service["env_file"]] == [".env"], name
        assert service["build"]["target"] == "agent"
        # Calls finish before the kill.
        assert _seconds(service["stop_grace_period"]) > DRAIN_S
        # The agents stop before the front door that carries their BYEs.
        assert "frontdoor" in service["depends_on"] and "backend" in service["depends_on"]
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert f":{flags[name]['http-port']}/" in " ".join(service["healthcheck"]["test"])
        assert flags[name]["realtime-url"].endswith(":8765/v1/realtime")
    # Each worker its own SIP port, HTTP port and RTP range.
    for key in ("sip-port", "http-port"):
        assert len({f[key] for f in flags.values()}) == len(agents), key
    ranges = [set(_rtp_range(f["rtp-port"])) for f in flags.values()]
    assert sum(map(len, ranges)) == len(set().union(*ranges))

    # The front door's agent list is the workers' addresses; its load cap their capacity.
    door = services["frontdoor"]["environment"]
    assert door["AGENTS"].split() == [f"{f['sip-host']}:{f['sip-port']}" for f in flags.values()]
    assert int(door["MAXLOAD"]) == SipSettings().max_calls
    assert _flags(services["backend"]["command"])["port"] == "8765"


def test_compose_command_lines_are_ones_the_agent_takes() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        if not name.startswith("agent-"):
            continue
        flags = _flags(service["command"])
        settings = _agent_settings(service["command"])
        assert (settings.sip.host, settings.sip.port) == ("127.0.0.1", int(flags["sip-port"]))
        assert settings.http.port == int(flags["http-port"])
        assert settings.realtime.url == flags["realtime-url"]
    backend = _parser().parse_args(services["backend"]["command"])
    assert (backend.command, backend.host, backend.port) == ("local-server", "127.0.0.1", 8765)


@pytest.mark.skipif(KAMAILIO is None, reason="kamailio not installed (apt-get install kamailio)")
def test_the_compose_front_door_starts_from_its_environment(tmp_path: Path) -> None:
    """run-frontdoor.sh with the compose file's environment writes its lists and passes
    Kamailio's check (-c) with them."""
    door = _compose()["services"]["frontdoor"]
    assert door["build"]["target"] == "frontdoor" and "command" not in door
    env = {**os.environ, **door["environment"], "RUN_DIR": str(tmp_path)}
    done = subprocess.run(
        ["sh", str(RUN_FRONTDOOR), "-c"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    listed = (tmp_path / "dispatcher.list").read_text()
    assert "sip:127.0.0.1:5071" in listed and "sip:127.0.0.1:5072" in listed
    assert "1 127.0.0.0 8 0 allow-1" in (tmp_path / "address.list").read_text()


def _docker_compose() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    found = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    return docker if found.returncode == 0 else None


@pytest.mark.skipif(
    _docker_compose() is None, reason="docker with the compose plugin is not installed"
)
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = _docker_compose()
    assert docker is not None
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--project-directory", str(REPO), "config", "-q"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_image_is_multi_stage_non_root_and_installed_from_the_lock() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.MULTILINE)
    assert stages == ["build", "agent", "frontdoor"]
    build = text.split("FROM ")[1]
    assert "COPY pyproject.toml uv.lock" in build
    syncs = re.findall(r"^RUN uv sync (.*)$", build, re.MULTILINE)
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)
    # The agent stage takes only the built tree; both run stages as a numeric non-root user.
    for stage in text.split("FROM ")[2:]:
        users = re.findall(r"^USER (\d+):(\d+)$", stage, re.MULTILINE)
        assert users and all(int(uid) > 0 for uid, _ in users), stage[:60]
    assert "COPY --from=build /app /app" in text
    # Nothing the image needs is left out of the build context.
    ignored = (REPO / ".dockerignore").read_text().split()
    for copied in re.findall(r"^COPY (?!--)(.+) \S+$", text, re.MULTILINE):
        for path in copied.split():
            assert path.rstrip("/") not in ignored, path


# ---- deploy/k8s -----------------------------------------------------------------------------


def _manifests() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = sorted(kustomization["resources"])
    assert listed == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name in listed:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (container,) = [c for c in pod["containers"] if c["name"] == name]
    return container


def test_k8s_agents_are_ready_from_readyz_drain_on_prestop_and_have_a_disruption_budget() -> None:
    manifests = _manifests()
    deployment = manifests[("Deployment", "voice-agent")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    pod = deployment["spec"]["template"]["spec"]
    agent = _container(pod, "agent")
    flags = _flags(agent["args"])
    ports = {p["name"]: p["containerPort"] for p in agent["ports"]}
    assert ports == {"sip": int(flags["sip-port"]), "http": int(flags["http-port"])}
    # Probed on the pod's address, where the listener is bound.
    assert flags["http-host"] == "$(POD_IP)"
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    hook = agent["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:2] == ["/bin/sh", "-c"] and "kill -TERM 1" in hook[2]
    # The grace period covers the drain and the shutdown after it.
    assert pod["terminationGracePeriodSeconds"] > DRAIN_S + 10
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"name": "voice-agent-secrets", "optional": True} in [
        e["secretRef"] for e in agent["envFrom"] if "secretRef" in e
    ]
    # The arguments, with the pod's address filled in, are ones the agent takes.
    env = {e["name"]: e.get("value", "") for e in agent["env"]}
    args = [
        a.replace("$(POD_IP)", "10.0.0.5").replace("$(FRONTDOOR_NODES)", env["FRONTDOOR_NODES"])
        for a in agent["args"]
    ]
    settings = _agent_settings(args)
    assert settings.http.host == settings.sip.host == "10.0.0.5"
    # The front door (on a node's address) may call.
    assert env["FRONTDOOR_NODES"] in settings.sip.allow_from
    assert settings.http.port == ports["http"] and settings.sip.port == ports["sip"]

    budget = manifests[("PodDisruptionBudget", "voice-agent")]
    assert budget["spec"]["selector"]["matchLabels"] == labels
    assert budget["spec"]["maxUnavailable"] == 1

    service = manifests[("Service", "voice-agent-agents")]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == labels
    assert not service["spec"].get("publishNotReadyAddresses", False)


def test_k8s_front_door_takes_its_agent_list_from_the_agents_service() -> None:
    manifests = _manifests()
    settings = manifests[("ConfigMap", "voice-agent-frontdoor")]["data"]
    agents = manifests[("Deployment", "voice-agent")]["spec"]["template"]["spec"]
    agent_flags = _flags(_container(agents, "agent")["args"])
    assert settings["AGENTS_SERVICE"] == "voice-agent-agents"
    assert settings["AGENT_SIP_PORT"] == agent_flags["sip-port"]
    assert int(settings["MAXLOAD"]) == SipSettings().max_calls

    pod = manifests[("Deployment", "voice-agent-frontdoor")]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    refresh = _container(pod, "agents-from-dns")
    kamailio = _container(pod, "kamailio")
    args = ["$(AGENTS_SERVICE)", "$(AGENT_SIP_PORT)", "$(MAXLOAD)"]
    env = {e["name"]: e.get("value") for e in kamailio["env"]}
    listed = env["DISPATCHER_LIST"]
    assert init["command"][1:] == ["--once", *args, listed]
    assert refresh["command"][1:] == [*args, listed, f"unix:{env['RUN_DIR']}/kamailio_ctl"]
    for container in (init, refresh, kamailio):
        assert {"configMapRef": {"name": "voice-agent-frontdoor"}} in container["envFrom"]
        assert [m["mountPath"] for m in container["volumeMounts"]] == [env["RUN_DIR"]]
    # The scripts named are the ones in deploy/kamailio, where the image puts them.
    image_dir = "/opt/voice-agent/deploy/kamailio/"
    for command in (init["command"][0], refresh["command"][0], kamailio["command"][2]):
        script = re.search(rf"{image_dir}(\S+)", command)
        assert script and (KAMAILIO_DIR / script[1]).is_file(), command
    assert f"COPY deploy/kamailio/ {image_dir}" in DOCKERFILE.read_text()
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"


@pytest.mark.sipp
@pytest.mark.timeout(60)
async def test_the_prestop_hook_returns_only_once_the_agent_has_drained(tmp_path: Path) -> None:
    """The hook, run against a real agent in a call: the call runs to the caller's BYE, the
    agent exits 0, and only then does the hook return (the kubelet's SIGTERM after it would
    be a second signal, which ends calls at once)."""
    deployment = _manifests()[("Deployment", "voice-agent")]
    agent_spec = _container(deployment["spec"]["template"]["spec"], "agent")
    hook: str = agent_spec["lifecycle"]["preStop"]["exec"]["command"][2]
    async with RecordingServer("127.0.0.1", 0) as server:
        agent = AgentProcess(free_port(), ["--realtime-url", server.url])
        await agent.start()
        assert agent.proc is not None
        pid = str(agent.proc.pid)
        # PID 1 in the container is the agent.
        here = hook.replace("kill -TERM 1;", f"kill -TERM {pid};")
        here = here.replace("kill -0 1 ", f"kill -0 {pid} ")
        assert here.count(pid) == 2, hook
        peer = await RtpPeer.open()
        try:
            peer.talk(talk_then_pause(), "PCMU")
            call = asyncio.create_task(
                run_sipp(
                    "uac_peer.xml", agent.sip_port, keys=peer.sipp_keys(),
                    fill={"call_ms": "4000"}, workdir=tmp_path,
                )
            )  # fmt: skip
            await agent.wait_for("call_answered", 10)
            started = time.monotonic()
            prestop = await asyncio.create_subprocess_exec("/bin/sh", "-c", here)
            await agent.wait_for("agent_draining", 5)
            assert (await call).returncode == 0
            assert await asyncio.wait_for(prestop.wait(), 10) == 0
            assert agent.proc.returncode == 0
            assert time.monotonic() - started > 2.0
            (finished,) = agent.events("call_finished")
            assert finished["ended_by"] == "caller"
        finally:
            peer.close()
            await agent.stop()


# ---- deploy/systemd -------------------------------------------------------------------------


def _unit(name: str) -> dict[str, list[str]]:
    """A unit file's ``Section.Key`` settings, each with every value given (in order)."""
    settings: dict[str, list[str]] = {}
    section = ""
    text = (SYSTEMD / name).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key}", []).append(" ".join(value.split()))
    return settings


def test_systemd_agent_unit_drains_within_its_stop_timeout() -> None:
    agent = _unit("voice-agent@.service")
    command = agent["Service.ExecStart"][0].split()
    assert command[1] == "serve"
    assert {"sip-port", "rtp-port", "http-port", "sip-host"} <= set(_flags(command))
    # With an instance's environment (the example in the file's header) filled in, the
    # command line is one the agent takes.
    example = dict(
        re.findall(r"^#\s+([A-Z_]+)=(\S+)$", (SYSTEMD / "voice-agent@.service").read_text(), re.M)
    )
    assert {"SIP_HOST", "SIP_PORT", "RTP_PORTS", "HTTP_PORT"} <= set(example)
    example["CONFIG"] = str(REPO / "config" / "agent.toml")
    filled = [re.sub(r"\$\{(\w+)\}", lambda m: example[m[1]], a) for a in command[1:]]
    settings = _agent_settings([a.replace("%S", "/var/lib") for a in filled])
    assert settings.sip.port == int(example["SIP_PORT"])
    assert settings.http.port == int(example["HTTP_PORT"])
    # SIGTERM to the agent alone: it drains and stops its own backend.
    assert agent["Service.KillMode"] == ["mixed"]
    assert agent["Service.KillSignal"] == ["SIGTERM"]
    assert float(agent["Service.TimeoutStopSec"][0]) > DRAIN_S
    # Stopped before the front door that carries its calls' BYEs.
    assert "voice-agent-frontdoor.service" in agent["Unit.After"][0].split()
    assert "/etc/voice-agent/agent-%i.env" in agent["Service.EnvironmentFile"]
    assert agent["Service.User"] == ["voice-agent"]

    door = _unit("voice-agent-frontdoor.service")
    assert door["Service.ExecStart"] == ["/opt/voice-agent/deploy/kamailio/run-frontdoor.sh"]
    assert door["Service.Environment"] == ["RUN_DIR=%t/voice-agent-frontdoor"]
    assert door["Service.RuntimeDirectory"] == ["voice-agent-frontdoor"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_systemd_analyze_finds_nothing_wrong_but_the_missing_install(tmp_path: Path) -> None:
    for unit in SYSTEMD.glob("*.service"):
        shutil.copy(unit, tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify",
         str(tmp_path / "voice-agent@1.service"), str(tmp_path / "voice-agent-frontdoor.service")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    complaints = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        # The project is not installed in /opt/voice-agent on a test machine.
        if not re.search(r"Command /opt/voice-agent/\S+ is not executable", line)
    ]
    assert complaints == []
