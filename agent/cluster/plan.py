"""Who runs where in ``voice-agent cluster``: ports and RTP ranges, decided before anything starts.

The front door (Kamailio) listens on the cluster's SIP port P; worker i (from 0) answers on
P + 1 + i, serves health and metrics on ``http.port`` + i (or a free port each when it is 0),
and takes its own slice of the profile's RTP range, so two workers never offer the same port.
No I/O here: the plan is a value the supervisor carries out and the tests read.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from agent.config import ConfigError, Settings

#: RTP ports a worker needs per call it takes: RTP and RTCP, with as much again in hand for
#: a call whose ports are not released yet when the next one comes.
PORTS_PER_CALL = 4


@dataclass(frozen=True)
class WorkerPlan:
    name: str
    sip_port: int
    rtp_first: int
    rtp_count: int
    http_port: int

    @property
    def rtp_ports(self) -> str:
        """``--rtp-port`` for this worker: FIRST-LAST."""
        return f"{self.rtp_first}-{self.rtp_first + self.rtp_count - 1}"


@dataclass(frozen=True)
class ClusterPlan:
    host: str
    sip_port: int
    workers: tuple[WorkerPlan, ...]
    #: Calls each worker takes at once: the dispatcher's maxload for it.
    max_calls: int
    #: Trunk sources the front door lets in (normalised CIDR).
    allow: tuple[str, ...]

    @property
    def agent_addresses(self) -> list[str]:
        """HOST:PORT/MAXLOAD of every worker, as gen-dispatcher-list.sh takes them."""
        return [f"{self.host}:{w.sip_port}/{self.max_calls}" for w in self.workers]


def default_workers() -> int:
    """One worker per core: a worker uses one core at most (the GIL)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_cluster(
    settings: Settings, workers: int, host: str, sip_port: int, allow: tuple[str, ...]
) -> ClusterPlan:
    """The cluster for ``settings``; a plan that cannot work is a ``ConfigError``."""
    if workers < 1:
        raise ConfigError("--workers: at least one worker is needed")
    if host in ("0.0.0.0", "::", ""):
        # Kamailio writes its listen address into Via and Record-Route.
        raise ConfigError("--sip-host: name the address callers reach, not a wildcard")
    if not 1 <= sip_port <= 65535 - workers:
        raise ConfigError(f"--sip-port: {sip_port} leaves no room for {workers} worker ports")
    sip = settings.sip
    span = sip.rtp_port_range // workers // 2 * 2
    if span < PORTS_PER_CALL * sip.max_calls:
        raise ConfigError(
            f"sip.rtp_port_range: {sip.rtp_port_range} ports over {workers} workers leaves "
            f"{span} each, fewer than {PORTS_PER_CALL} per call for sip.max_calls = "
            f"{sip.max_calls}: widen the range (--rtp-port FIRST-LAST) or run fewer workers"
        )
    http_port = settings.http.port
    if http_port and http_port + workers - 1 > 65535:
        raise ConfigError(f"http.port: {http_port} leaves no room for {workers} workers")
    networks = []
    for text in allow:
        try:
            networks.append(str(ipaddress.IPv4Network(text, strict=False)))
        except ValueError:
            raise ConfigError(f"--allow: {text!r} is not an IPv4 address or CIDR") from None
    plans = tuple(
        WorkerPlan(
            name=f"agent-{i + 1}",
            sip_port=sip_port + 1 + i,
            rtp_first=sip.rtp_port + i * span,
            rtp_count=span,
            http_port=http_port + i if http_port else 0,
        )
        for i in range(workers)
    )
    return ClusterPlan(host, sip_port, plans, sip.max_calls, tuple(networks))
