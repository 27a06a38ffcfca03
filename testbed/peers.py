"""Real peers for tests and benchmarks: the agent as a process, SIPp callers, an RTP sink.

Everything binds to 127.0.0.1, every wait is bounded, every process is stopped on exit.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from agent.config import SipSettings
from agent.ports import can_bind, unused_port

HOST = "127.0.0.1"
SIPP_DIR = Path(__file__).resolve().parent / "sipp"
REPO = Path(__file__).resolve().parent.parent
CODEC_PT = {"PCMU": 0, "PCMA": 8, "G722": 9}
#: Sample rate of each codec's audio (G.722 is wideband; its RTP clock still runs at 8 kHz).
CODEC_RATE = {"PCMU": 8000, "PCMA": 8000, "G722": 16000}
#: RFC 4733 event codes 0-15, as keypad digits.
DTMF_EVENTS = "0123456789*#ABCD"

SIPP = shutil.which("sipp")
#: The front door's Kamailio (Debian puts it in /usr/sbin, often not on PATH); None: absent.
KAMAILIO = shutil.which("kamailio", path="/usr/sbin:/usr/local/sbin:" + os.environ["PATH"])

#: The SIP engines the end-to-end tests run the agent on (agent/sip/engines.py).
SIP_ENGINES = ("pjsip", "baresip")
#: The engine an agent runs on when nothing selects one (``sip.engine``'s default).
DEFAULT_SIP_ENGINE = SipSettings.engine


def engine_args(engine: str) -> list[str]:
    """``voice-agent serve`` arguments selecting ``engine``."""
    return ["--engine", engine]


def _xdist_worker() -> tuple[int, int] | None:
    """This pytest-xdist worker's index and the number of workers; None outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not worker.startswith("gw") or not count:
        return None
    return int(worker.removeprefix("gw")), int(count)


#: Where tests pick their ports (``free_port``) under pytest-xdist: each worker probes only
#: its own share of this block, so a port one worker found free and closed can never be
#: taken meanwhile by the other. Below the kernel's ephemeral ports (32768-60999, which
#: every ``bind(port 0)`` draws from), clear of the agents' RTP ports (below) and of the
#: benchmarks' (bench/harness.py, from 20000).
_PICKED_PORTS = range(10000, 20000)
#: Each worker's agents get their own RTP range: worker n from 6000 + 200 n, 200 ports
#: (sip.rtp_port_range's default; serial runs keep the default 4000-4199).
_AGENT_RTP_BASE = 6000
_AGENT_RTP_SPAN = SipSettings.rtp_port_range


def _worker_ports() -> range | None:
    worker = _xdist_worker()
    if worker is None:
        return None
    index, count = worker
    share = len(_PICKED_PORTS) // max(count, 1)
    first = _PICKED_PORTS.start + index * share
    return range(first, first + share)


def _is_free(port: int) -> bool:
    """Nothing is bound to ``port`` on HOST, over UDP or TCP."""
    return can_bind(HOST, port) and can_bind(HOST, port, socket.SOCK_STREAM)


#: The next port this worker hands out; ports go in turn (a random start, for runs side by
#: side), so one just handed out is not handed out again before the block wraps around.
_next_port: int | None = None


def _free_run_in(ports: range, span: int, even: bool) -> int:
    global _next_port
    if _next_port is None or _next_port not in ports:
        _next_port = ports.start + int.from_bytes(os.urandom(2), "big") % len(ports)
    for _ in range(len(ports)):
        first = _next_port
        if first + span > ports.stop:
            _next_port = ports.start
            continue
        if even and first % 2:
            _next_port = first + 1
            continue
        if all(_is_free(port) for port in range(first, first + span)):
            _next_port = first + span
            return first
        _next_port = first + 1
    raise RuntimeError(f"no free run of {span} ports in {ports}")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port on HOST nothing is bound to (``kind``: UDP or TCP; under pytest-xdist, both
    and from this worker's own ports)."""
    ports = _worker_ports()
    if ports is not None:
        return _free_run_in(ports, 1, even=False)
    return unused_port(HOST, kind)


def free_rtp_port(span: int = 2) -> int:
    """An even UDP port with the ``span - 1`` ports after it free too (RTP, RTCP, ...)."""
    ports = _worker_ports()
    if ports is not None:
        return _free_run_in(ports, span, even=True)
    for _ in range(50):
        port = free_port()
        if port % 2 or port + span > 65000:
            continue
        try:
            with contextlib.ExitStack() as held:
                for neighbour in range(port + 1, port + span):
                    sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    sock.bind((HOST, neighbour))
            return port
        except OSError:
            continue
    raise RuntimeError("no free run of RTP ports")


def worker_rtp_args(args: list[str], cwd: Path) -> list[str]:
    """``--rtp-port`` giving an agent this pytest-xdist worker's own RTP range, unless the
    test chose its ports (``--rtp-port``, or ``sip.rtp_port`` in its ``--config``) or runs
    outside xdist (then the default)."""
    worker = _xdist_worker()
    if worker is None or "--rtp-port" in args:
        return []
    if "--config" in args:
        path = cwd / args[args.index("--config") + 1]
        if {"rtp_port", "rtp_port_range"} & set(tomllib.loads(path.read_text()).get("sip", {})):
            return []
    first = _AGENT_RTP_BASE + worker[0] * _AGENT_RTP_SPAN
    return ["--rtp-port", f"{first}-{first + _AGENT_RTP_SPAN - 1}"]


def speech_like(seconds: float, rate: int = 8000, dbfs: float = -15.0) -> np.ndarray:
    """A voiced, syllable-modulated signal: what an energy or neural VAD should call speech."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    signal_ = voice * envelope
    # RMS in dBFS as agent.audio.levels measures it (AES17: a full-scale sine is 0 dBFS).
    signal_ *= 10 ** (dbfs / 20) * 32767 / np.sqrt(2 * np.mean(signal_**2))
    return np.clip(signal_, -32768, 32767).astype(np.int16)


def talk_then_pause(talk_s: float = 1.2, pause_s: float = 1.5, rate: int = 8000) -> bytes:
    """PCM16 at ``rate``: speech-like audio, then silence (one caller turn)."""
    speech = speech_like(talk_s, rate)
    pcm = np.concatenate([speech, np.zeros(int(pause_s * rate), np.int16)])
    return pcm.tobytes()


def _g722() -> Any:
    import G722  # a test dependency only: the agent's stacks carry their own G.722

    return G722.G722(16000, 64000, use_numpy=False)


class _Encoder:
    """One direction of a codec: G.711 is stateless, G.722 keeps its ADPCM state."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self._g722 = _g722() if codec == "G722" else None

    def encode(self, pcm: bytes) -> bytes:
        if self._g722 is not None:
            return bytes(self._g722.encode(array.array("h", pcm)))
        return (ulaw_encode if self.codec == "PCMU" else alaw_encode)(pcm)


def write_g711_stream(path: Path, codec: str, talk_s: float = 1.2, pause_s: float = 1.5) -> Path:
    """A raw G.711 file for SIPp's rtp_stream: one caller turn."""
    encode = ulaw_encode if codec == "PCMU" else alaw_encode
    path.write_bytes(encode(talk_then_pause(talk_s, pause_s)))
    return path


class RtpStranger:
    """Someone who is not the call's peer, on a loopback address and port of its own: it
    sends RTP to a call's port, and counts what the agent sends it back (which must be
    nothing)."""

    def __init__(self, host: str = HOST) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)

    async def flood(
        self, target: tuple[str, int], packets: int, payload: bytes, interval_s: float
    ) -> None:
        """``packets`` PCMU packets of ``payload``, one every ``interval_s``."""
        for seq in range(packets):
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 0xBAD)
            self.sock.sendto(header + payload, target)
            await asyncio.sleep(interval_s)

    def received(self) -> int:
        """Datagrams received since the last call."""
        count = 0
        while True:
            try:
                self.sock.recv(2048)
            except BlockingIOError:
                return count
            count += 1

    def close(self) -> None:
        self.sock.close()


@dataclass
class RtpPacket:
    arrival: float
    payload_type: int
    seq: int
    timestamp: int
    payload: bytes


class RtpPeer(asyncio.DatagramProtocol):
    """The caller's RTP end: keeps every packet the agent sends and can talk back.

    It answers to where the agent's RTP comes from (symmetric RTP), sending G.711 in 20 ms
    packets paced by the loop clock. SIPp does the signalling, naming this port in its SDP.
    """

    def __init__(self) -> None:
        self.packets: list[RtpPacket] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.remote: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
        self._talker: asyncio.Task[None] | None = None
        self.sent_packets = 0
        self._talk_seq = 1
        self._talk_epoch: float | None = None
        # The DTMF stream's RTP sequence and timestamp go on across send_dtmf calls.
        self._dtmf_seq, self._dtmf_ts = 1, 8000

    @classmethod
    async def open(cls, port: int = 0, host: str = HOST) -> RtpPeer:
        """A peer on ``host`` (another loopback address stands in for a caller's private
        one) and ``port`` (0: a free one)."""
        loop = asyncio.get_running_loop()
        peer = cls()
        address = (host, port or free_rtp_port())
        await loop.create_datagram_endpoint(lambda: peer, local_addr=address)
        return peer

    def sipp_keys(self, codec: str = "PCMU") -> dict[str, str]:
        """SIPp ``-key`` values for uac_peer*.xml: offer ``codec``, name this port in the SDP."""
        return {"codec_pt": str(CODEC_PT[codec]), "codec_name": codec, "sink_port": str(self.port)}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        _, marker_pt, seq, ts = struct.unpack("!BBHI", data[:8])
        self.packets.append(RtpPacket(time.monotonic(), marker_pt & 0x7F, seq, ts, data[12:]))
        if not self.remote.done():
            self.remote.set_result(addr)

    @staticmethod
    def decode(packet: RtpPacket) -> bytes:
        """A packet's G.711 payload as 8 kHz PCM16 (empty for other payload types)."""
        if packet.payload_type == 0:
            return ulaw_decode(packet.payload)
        if packet.payload_type == 8:
            return alaw_decode(packet.payload)
        return b""

    def audio(self) -> bytes:
        """All G.711 audio received, decoded to 8 kHz PCM16 in arrival order."""
        return b"".join(self.decode(packet) for packet in self.packets)

    def wideband_audio(self) -> bytes:
        """All G.722 audio received (payload type 9), decoded to 16 kHz PCM16 in order."""
        decoder = _g722()
        return b"".join(
            bytes(decoder.decode(packet.payload))
            for packet in self.packets
            if packet.payload_type == 9
        )

    def telephone_events(self, payload_type: int = 101) -> list[str]:
        """RFC 4733 key presses received, in order (one per event, however often it is sent).

        ``payload_type`` is the telephone-event PT of the call's SDP (101 in our scenarios).
        """
        digits: list[str] = []
        seen: set[int] = set()
        for packet in self.packets:
            if packet.payload_type != payload_type or len(packet.payload) < 4:
                continue
            # Every packet of one event carries the event's start timestamp.
            if packet.timestamp in seen:
                continue
            seen.add(packet.timestamp)
            code = packet.payload[0]
            digits.append(DTMF_EVENTS[code] if code < len(DTMF_EVENTS) else f"<{code}>")
        return digits

    async def send_dtmf(
        self, digits: str, payload_type: int = 101, tone_ms: int = 100, gap_ms: int = 120
    ) -> None:
        """Press ``digits`` as RFC 4733 telephone-events (a stream of their own, no audio)."""
        remote = await self.remote
        assert self.transport is not None
        ssrc, seq, ts = 0xD7F0, self._dtmf_seq, self._dtmf_ts
        for digit in digits:
            code = DTMF_EVENTS.index(digit)
            steps = tone_ms // 20
            for step in range(steps + 3):
                end = step >= steps - 1
                duration = 160 * min(step + 1, steps)
                marker = 0x80 if step == 0 else 0
                header = struct.pack("!BBHII", 0x80, marker | payload_type, seq & 0xFFFF, ts, ssrc)
                # The end packet is sent three times (RFC 4733 2.5.1.4), same duration.
                body = struct.pack("!BBH", code, (0x80 if end else 0) | 10, duration)
                self.transport.sendto(header + body, remote)
                seq += 1
                if step < steps - 1:
                    await asyncio.sleep(0.02)
            ts += 8 * (tone_ms + gap_ms)
            self._dtmf_seq, self._dtmf_ts = seq, ts
            await asyncio.sleep(gap_ms / 1000)

    def talk(self, pcm: bytes, codec: str) -> None:
        """Start sending ``pcm`` (PCM16 at the codec's rate, looped) once the agent's RTP
        address is known, instead of what it sent before."""
        if self._talker is not None:
            self._talker.cancel()
        self._talker = asyncio.create_task(self._talk(pcm, codec))

    async def _talk(self, pcm: bytes, codec: str) -> None:
        encoder = _Encoder(codec)
        frame_bytes = CODEC_RATE[codec] // 50 * 2
        remote = await self.remote
        assert self.transport is not None
        ssrc = 0x5EED
        start = time.monotonic()
        # One RTP stream however often the talk changes: the sequence goes on, and the
        # timestamp follows the time that passed (a jitter buffer drops a stream that
        # jumps back as late packets).
        if self._talk_epoch is None:
            self._talk_epoch = start
        ts = int((start - self._talk_epoch) * 50) * 160
        frame = 0
        looped = pcm + pcm
        while True:
            offset = (frame * frame_bytes) % len(pcm)
            chunk = encoder.encode(looped[offset : offset + frame_bytes])
            seq = self._talk_seq
            header = struct.pack("!BBHII", 0x80, CODEC_PT[codec], seq & 0xFFFF, ts, ssrc)
            self.transport.sendto(header + chunk, remote)
            self.sent_packets += 1
            frame, self._talk_seq, ts = frame + 1, seq + 1, (ts + 160) & 0xFFFFFFFF
            await asyncio.sleep(max(0.0, start + frame * 0.02 - time.monotonic()))

    def close(self) -> None:
        if self._talker is not None:
            self._talker.cancel()
        if self.transport is not None:
            self.transport.close()


async def reap(
    proc: asyncio.subprocess.Process,
    reader: asyncio.Task[None] | None,
    timeout_s: float,
    *,
    terminate: bool,
) -> int:
    """A child's exit status: SIGTERM first (``terminate``), killed when it has not exited
    within ``timeout_s``; then what it printed, read to the end (``reader``)."""
    if proc.returncode is None:
        if terminate:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    if reader is not None:
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(reader, 5)
    return int(proc.returncode or 0)


@dataclass(kw_only=True)
class JsonLinesChild:
    """A ``voice-agent`` command as a child process: its output read as it comes, each line
    kept raw and, when it is a JSON object, parsed."""

    proc: asyncio.subprocess.Process | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    async def _spawn(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *command, cwd=cwd, env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            text = raw.decode(errors="replace").rstrip()
            self.raw.append(text)
            with contextlib.suppress(ValueError):
                line = json.loads(text)
                if isinstance(line, dict):
                    self.lines.append(line)

    async def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM (drain), then the exit status; kills after ``timeout_s``."""
        assert self.proc is not None
        return await reap(self.proc, self._reader, timeout_s, terminate=True)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]


@dataclass
class AgentProcess(JsonLinesChild):
    """``voice-agent serve`` as a child process, logging JSON lines we can read."""

    sip_port: int
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: Where the agent writes call transcripts; a fresh temporary directory by default.
    records_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="records-")))
    #: The agent's working directory (where a core dump would land).
    cwd: Path = REPO
    #: ``--loop-nice``: 0 unless told. The suite runs agents next to the peers that measure
    #: them on 2 cores, and an agent ahead of its own peers would make them late; None leaves
    #: the profile's (the product's default, -10, as the benchmarks run it).
    loop_nice: int | None = 0

    async def start(self, timeout_s: float = 20.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.update(self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("PYTHONPATH", str(REPO))
        command = [
            sys.executable, "-m", "agent.cli", "serve",
            "--sip-host", HOST, "--sip-port", str(self.sip_port), "--log-format", "json",
            "--env-file", os.devnull, "--records-dir", str(self.records_dir),
            # A free port for health and metrics (agents run side by side); see http_url.
            "--http-port", "0", *worker_rtp_args(self.args, self.cwd),
            *([] if self.loop_nice is None else ["--loop-nice", str(self.loop_nice)]),
            *self.args,
        ]  # fmt: skip
        await self._spawn(command, self.cwd, env)
        await self.wait_for("agent_listening", timeout_s)

    @property
    def http_url(self) -> str:
        """Where the agent's health and metrics listener is (from ``agent_listening``)."""
        return str(self.events("agent_listening")[0]["http"])

    def transcripts(self) -> list[list[dict[str, Any]]]:
        """Every call transcript written so far, each as its list of JSON lines."""
        return [
            [json.loads(line) for line in path.read_text().splitlines()]
            for path in sorted(self.records_dir.glob("*.jsonl"))
        ]

    async def wait_for(self, name: str, timeout_s: float, count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            if self.proc is not None and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        tail = "\n".join(self.raw[-30:])
        raise AssertionError(f"agent never logged {count}x {name!r}; last output:\n{tail}")


@dataclass
class SippResult:
    returncode: int
    output: str


def render_scenario(scenario: str, fill: dict[str, str], directory: Path) -> Path:
    """A copy of ``scenario`` with ``{{name}}`` replaced: for places SIPp reads no keywords."""
    text = (SIPP_DIR / scenario).read_text()
    for name, value in fill.items():
        text = text.replace("{{" + name + "}}", value)
    path = directory / scenario
    path.write_text(text)
    return path


async def run_sipp(
    scenario: str | Path,
    target_port: int,
    *,
    keys: dict[str, str] | None = None,
    fill: dict[str, str] | None = None,
    workdir: Path | None = None,
    calls: int = 1,
    concurrent: int = 1,
    rate: float = 10.0,
    media_port: int | None = None,
    timeout_s: float = 60.0,
    extra_args: list[str] | None = None,
    local_ip: str = HOST,
) -> SippResult:
    """Run SIPp ``scenario`` (a file in testbed/sipp, or a rendered path) against the agent.

    Bounded by ``timeout_s``; SIPp's exit status is 0 only when every call succeeded.
    ``extra_args`` are passed to SIPp as they are (e.g. ``-trace_logs``); ``local_ip`` is
    the loopback address SIPp calls from (127.0.0.2 plays a stranger).
    """
    scenario_path = scenario if isinstance(scenario, Path) else SIPP_DIR / scenario
    if fill:
        assert workdir is not None and isinstance(scenario, str), "fill needs a workdir"
        scenario_path = render_scenario(scenario, fill, workdir)
    assert SIPP is not None, "sipp is not installed (apt-get install sip-tester)"
    for _attempt in range(3):
        # SIPp binds its media port and the three after it (RTCP, video RTP/RTCP).
        rtp = media_port or free_rtp_port(span=4)
        command = [
            SIPP, f"{HOST}:{target_port}", "-sf", str(scenario_path),
            "-i", local_ip, "-p", str(free_port()), "-mi", local_ip, "-mp", str(rtp),
            "-m", str(calls), "-l", str(concurrent), "-r", str(rate),
            "-nostdin", "-timeout", f"{int(timeout_s)}s", "-timeout_error", "-recv_timeout", "20s",
        ]  # fmt: skip
        for key, value in (keys or {}).items():
            command += ["-key", key, value]
        command += extra_args or []
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=workdir or SIPP_DIR,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout_s + 10)
        except TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
        result = SippResult(int(proc.returncode or 0), out.decode(errors="replace"))
        # 254 (SIPp's -2): it could not bind a port another process took between our probe
        # and its bind. No call was placed, so trying again with fresh ports is safe.
        if result.returncode != 254 or media_port is not None:
            return result
    return result


async def expect_503(sip_port: int, retry_after: str, workdir: Path) -> None:
    """Place a call that must get ``503`` with ``Retry-After: retry_after`` (SIPp)."""
    refused = await run_sipp(
        "uac_expect_503.xml", sip_port, fill={"retry_after": retry_after}, workdir=workdir
    )
    assert refused.returncode == 0, refused.output[-3000:]


@dataclass
class SippCallee:
    """SIPp as a callee (a ``uas_*.xml`` scenario) on ``port``, running in the background:
    ``uri`` is where the agent dials it; ``result`` its outcome once it ends. Every message
    it received is in ``messages()`` (SIPp's ``-trace_msg`` log)."""

    port: int
    task: asyncio.Task[SippResult]
    workdir: Path

    @property
    def uri(self) -> str:
        return f"sip:callee@{HOST}:{self.port}"

    def messages(self) -> str:
        return "".join(
            path.read_text(errors="replace") for path in self.workdir.glob("*_messages.log")
        )

    async def result(self, timeout_s: float = 30.0) -> SippResult:
        return await asyncio.wait_for(asyncio.shield(self.task), timeout_s)


async def sipp_callee(
    scenario: str,
    workdir: Path,
    *,
    keys: dict[str, str] | None = None,
    fill: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    calls: int = 1,
) -> SippCallee:
    """Start SIPp as the callee of ``scenario`` (``{{name}}`` replaced from ``fill``;
    ``calls`` of them, one per Call-ID, then it exits; bounded by ``timeout_s``); returns
    once it listens."""
    assert SIPP is not None, "sipp is not installed (apt-get install sip-tester)"
    workdir.mkdir(parents=True, exist_ok=True)
    path = render_scenario(scenario, fill, workdir) if fill else SIPP_DIR / scenario
    port = free_port()
    rtp = free_rtp_port(span=4)
    command = [
        SIPP, "-sf", str(path), "-i", HOST, "-p", str(port),
        "-mi", HOST, "-mp", str(rtp), "-m", str(calls), "-nostdin", "-trace_msg",
        "-timeout", f"{int(timeout_s)}s", "-timeout_error", "-recv_timeout", f"{int(timeout_s)}s",
    ]  # fmt: skip
    for key, value in (keys or {}).items():
        command += ["-key", key, value]

    async def run() -> SippResult:
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout_s + 10)
        except (TimeoutError, asyncio.CancelledError):
            proc.kill()
            out, _ = await proc.communicate()
        return SippResult(int(proc.returncode or 0), out.decode(errors="replace"))

    callee = SippCallee(port, asyncio.create_task(run()), workdir)
    # Listening once its UDP port is taken.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not callee.task.done():
        if not can_bind(HOST, port):
            return callee
        await asyncio.sleep(0.05)
    raise AssertionError(f"SIPp never listened on {port}")


@dataclass
class CallCommand(JsonLinesChild):
    """``voice-agent call TARGET`` as a child process, logging JSON lines."""

    records_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="records-")))

    async def run(
        self, target: str, args: list[str], env: dict[str, str] | None = None, timeout_s: float = 40
    ) -> int:
        """Place the call; its exit status (killed after ``timeout_s``)."""
        child_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        child_env.update(env or {})
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        child_env.setdefault("PYTHONPATH", str(REPO))
        command = [
            sys.executable, "-m", "agent.cli", "call", target, "--sip-host", HOST,
            "--log-format", "json", "--env-file", os.devnull,
            "--records-dir", str(self.records_dir), *args,
        ]  # fmt: skip
        await self._spawn(command, REPO, child_env)
        assert self.proc is not None
        return await reap(self.proc, self._reader, timeout_s, terminate=False)

    def records(self) -> list[dict[str, Any]]:
        """The call records written (one JSON document per call)."""
        paths = sorted(self.records_dir.glob("*.json"))
        return [json.loads(p.read_text()) for p in paths if p.name != "outbound-ledger.json"]


def peer_call(
    peer: RtpPeer, agent: AgentProcess, workdir: Path, codec: str = "PCMU", call_ms: int = 3000
) -> asyncio.Task[SippResult]:
    """One call from SIPp's ``uac_peer.xml`` (SIPp signals, ``peer`` carries the RTP) that
    hangs up after ``call_ms``, running in the background."""
    return asyncio.create_task(
        run_sipp(
            "uac_peer.xml",
            agent.sip_port,
            keys=peer.sipp_keys(codec),
            fill={"call_ms": str(call_ms)},
            workdir=workdir,
        )
    )
