"""Kamailio as a real registrar for tests: ``testbed/kamailio/registrar.cfg`` over db_text.

Each :class:`Registrar` gets its own database directory (a ``subscriber`` table with the
users given), runtime directory and port on 127.0.0.1, runs in the foreground (``-DD -E``)
and is stopped with SIGTERM (it exits within ~50 ms). ``start`` returns once it answers an
OPTIONS; every wait is bounded. Its log lines are kept for the test to read.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from testbed.peers import reap

CONFIG = Path(__file__).resolve().parent / "kamailio" / "registrar.cfg"
KAMAILIO = shutil.which("kamailio") or (
    "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None
)
HOST = "127.0.0.1"


def _escape(value: str) -> str:
    # db_text separates fields with ':'.
    return value.replace(":", "\\:")


@dataclass
class Registrar:
    port: int
    #: username -> password, all in the domain 127.0.0.1.
    users: dict[str, str]
    #: With a TLS listener on this port, serving ``tls_cert``/``tls_key`` (PEM files).
    tls_port: int = 0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Answer a REGISTER for a user not in the table 404 (by default 403, like a wrong
    #: password: no user enumeration).
    unknown_user_404: bool = False
    #: With a TCP listener on this port too.
    tcp_port: int = 0
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kamailio-")))
    proc: asyncio.subprocess.Process | None = None
    lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    def _write_db(self) -> Path:
        db = self.directory / "db"
        db.mkdir(exist_ok=True)
        rows = [
            f"{index}:{_escape(user)}:{HOST}:{_escape(password)}"
            for index, (user, password) in enumerate(self.users.items(), start=1)
        ]
        (db / "subscriber").write_text(
            "id(int,auto) username(str) domain(str) password(str)\n" + "\n".join(rows) + "\n"
        )
        (db / "version").write_text(
            "table_name(str) table_version(int)\nsubscriber:7\nlocation:9\n"
        )
        return db

    async def start(self, timeout_s: float = 10.0) -> None:
        assert KAMAILIO is not None, "kamailio is not installed (apt-get install kamailio)"
        db = self._write_db()
        run = self.directory / "run"
        run.mkdir(exist_ok=True)
        defines: list[str] = []
        if self.tls_port:
            defines = [
                "-A", "WITH_TLS", "-A", f"LISTEN_TLS=tls:{HOST}:{self.tls_port}",
                "-A", f'TLS_CERT="{self.tls_cert}"', "-A", f'TLS_KEY="{self.tls_key}"',
            ]  # fmt: skip
        if self.unknown_user_404:
            defines += ["-A", "UNKNOWN_USER_404"]
        if self.tcp_port:
            defines += ["-A", f"LISTEN_TCP=tcp:{HOST}:{self.tcp_port}"]
        self.proc = await asyncio.create_subprocess_exec(
            KAMAILIO, "-DD", "-E", "-f", str(CONFIG), "-Y", str(run),
            "-A", f"LISTEN=udp:{HOST}:{self.port}", "-A", f'DBURL="text://{db}"', *defines,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                break
            if await asyncio.to_thread(self._answers_options):
                return
        tail = "\n".join(self.lines[-20:])
        raise AssertionError(f"kamailio did not start on {HOST}:{self.port}:\n{tail}")

    def _answers_options(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST, 0))
            sock.settimeout(0.2)
            # The reply goes to the Via's address: our own socket's.
            sock.sendto(self._options(sock.getsockname()[1]).encode(), (HOST, self.port))
            try:
                return sock.recv(4096).startswith(b"SIP/2.0 200")
            except OSError:
                return False

    def _options(self, reply_port: int) -> str:
        call_id = uuid.uuid4().hex
        return (
            f"OPTIONS sip:{HOST}:{self.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{reply_port};branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:probe@{HOST}>;tag=1\r\nTo: <sip:{HOST}:{self.port}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def count(self, text: str) -> int:
        """Log lines containing ``text`` so far."""
        return sum(text in line for line in self.lines)

    async def wait_for(self, text: str, timeout_s: float, count: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.count(text) >= count:
                return
            await asyncio.sleep(0.05)
        tail = "\n".join(self.lines[-20:])
        raise AssertionError(f"kamailio never logged {count}x {text!r}:\n{tail}")

    async def stop(self, timeout_s: float = 5.0) -> int:
        """SIGTERM, then the exit status; kills after ``timeout_s``."""
        if self.proc is None:
            return 0
        return await reap(self.proc, self._reader, timeout_s, terminate=True)
