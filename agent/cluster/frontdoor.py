"""The cluster's front door: ``deploy/kamailio/run-frontdoor.sh``, and an OPTIONS ping.

The front door starts the way a container or a systemd unit starts it: the same script
writes the agent list (with ``gen-dispatcher-list.sh``) and the allowlist and execs Kamailio
with ``kamailio.cfg``, so the cluster and a hand-made deployment cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from pathlib import Path

from agent.cluster.plan import ClusterPlan
from agent.config import ConfigError

KAMAILIO_DIR = Path(__file__).resolve().parent.parent.parent / "deploy" / "kamailio"
KAMAILIO_CFG = KAMAILIO_DIR / "kamailio.cfg"
RUN_FRONTDOOR = KAMAILIO_DIR / "run-frontdoor.sh"
GEN_DISPATCHER_LIST = KAMAILIO_DIR / "gen-dispatcher-list.sh"


def check_kamailio() -> None:
    """Kamailio is installed (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    if shutil.which("kamailio") is None and shutil.which("kamailio", path="/usr/sbin") is None:
        raise ConfigError("kamailio is not installed (Debian/Ubuntu: apt-get install kamailio)")
    if not KAMAILIO_CFG.is_file() or not RUN_FRONTDOOR.is_file():
        raise ConfigError(f"the front door's files are missing from {KAMAILIO_DIR}")


def frontdoor_command(plan: ClusterPlan, run_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The command and the environment that start the front door for ``plan``."""
    env = {
        "LISTEN": f"udp:{plan.host}:{plan.sip_port}",
        "AGENTS": " ".join(plan.agent_addresses),
        "MAXLOAD": str(plan.max_calls),
        "ALLOW": " ".join(plan.allow),
        "RUN_DIR": str(run_dir),
    }
    # Its processes are cheap; the cores are the agents'.
    return ["sh", str(RUN_FRONTDOOR), "-A", "CHILDREN=2"], env


class _Ping(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        first = data.split(b"\r\n", 1)[0].split(b" ")
        is_status = len(first) > 1 and first[0] == b"SIP/2.0" and first[1].isdigit()
        if is_status and not self.reply.done():
            self.reply.set_result(int(first[1]))


async def sip_ping(host: str, port: int, timeout_s: float = 1.0) -> int | None:
    """The status code of an OPTIONS to ``host:port`` (sent from ``host``), None if silent.

    The front door answers its own host's OPTIONS: 200 while an agent is in rotation, 503
    when none is.
    """
    loop = asyncio.get_running_loop()
    transport, ping = await loop.create_datagram_endpoint(_Ping, local_addr=(host, 0))
    try:
        local = transport.get_extra_info("sockname")
        call_id = uuid.uuid4().hex
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{call_id[:16]};rport\r\n"
            f"From: <sip:cluster@{local[0]}>;tag={call_id[16:24]}\r\n"
            f"To: <sip:{host}:{port}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        transport.sendto(request.encode(), (host, port))
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(ping.reply, timeout_s)
        return None
    finally:
        transport.close()
