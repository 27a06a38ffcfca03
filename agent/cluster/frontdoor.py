"""The cluster's front door: Kamailio with ``deploy/kamailio/kamailio.cfg``, its files and a ping.

The agent list is written by ``deploy/kamailio/gen-dispatcher-list.sh``, the same generator
an operator runs, so the cluster and a hand-made deployment cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import subprocess
import uuid
from pathlib import Path

from agent.cluster.plan import ClusterPlan
from agent.config import ConfigError

KAMAILIO_DIR = Path(__file__).resolve().parent.parent.parent / "deploy" / "kamailio"
KAMAILIO_CFG = KAMAILIO_DIR / "kamailio.cfg"
GEN_DISPATCHER_LIST = KAMAILIO_DIR / "gen-dispatcher-list.sh"


def find_kamailio() -> str:
    """The kamailio binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise ConfigError("kamailio is not installed (Debian/Ubuntu: apt-get install kamailio)")
    if not KAMAILIO_CFG.is_file():
        raise ConfigError(f"the front door's configuration is missing: {KAMAILIO_CFG}")
    return found


def write_files(plan: ClusterPlan, directory: Path) -> tuple[Path, Path]:
    """dispatcher.list (the workers) and address.list (``plan.allow``) in ``directory``."""
    dispatcher = directory / "dispatcher.list"
    generated = subprocess.run(
        ["sh", str(GEN_DISPATCHER_LIST), "-m", str(plan.max_calls), *plan.agent_addresses],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if generated.returncode != 0:
        raise ConfigError(generated.stderr.strip() or "gen-dispatcher-list.sh failed")
    dispatcher.write_text(generated.stdout)
    addresses = directory / "address.list"
    lines = ["# address.list written by voice-agent cluster (--allow)"]
    for index, text in enumerate(plan.allow, 1):
        network = ipaddress.IPv4Network(text, strict=False)
        lines.append(f"1 {network.network_address} {network.prefixlen} 0 allow-{index}")
    addresses.write_text("\n".join(lines) + "\n")
    return dispatcher, addresses


def kamailio_command(
    kamailio: str, plan: ClusterPlan, directory: Path, dispatcher: Path, addresses: Path
) -> list[str]:
    """Kamailio in the foreground (-DD), logging to stderr (-E), its runtime files in
    ``directory``."""
    return [
        kamailio, "-DD", "-E", "-f", str(KAMAILIO_CFG), "-Y", str(directory),
        "-A", f"LISTEN=udp:{plan.host}:{plan.sip_port}",
        "-A", f'DISPATCHER_LIST="{dispatcher}"',
        "-A", f'ADDRESS_LIST="{addresses}"',
        "-A", f'CTL_SOCK="unix:{directory / "kamailio_ctl"}"',
        # Its processes are cheap; the cores are the agents'.
        "-A", "CHILDREN=2",
    ]  # fmt: skip


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
