"""The callers' RTP ends for the benchmarks: many calls in one process, kernel timestamps.

Each leg sends and receives on one UDP port. pjmedia latches onto the source address of the
RTP it receives, so the port named in the caller's SDP must also be the one the caller sends
from: SIPp only signals (bench/sipp/uac_bench.xml names a leg's port in its SDP) and a leg
here carries the media. A leg starts talking when the agent's first packet arrives (that is
how it learns the agent's RTP address) and stops once the agent has been silent for a second.

Arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS), so what is measured is
the agent's sending, not this process's scheduling. They are converted to CLOCK_MONOTONIC,
which every process on the machine shares, so other processes' timestamps compare directly.

Run as a process: ``python -m bench.rtp_caller --legs N --out PATH``; it prints one JSON
line with the legs' ports, runs until SIGTERM (or ``--max-seconds``), then saves every leg's
record to PATH (``.npz``) and prints ``{"saved": PATH}``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import selectors
import signal
import socket
import struct
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from agent.audio.g711 import ulaw_decode, ulaw_encode

HOST = "127.0.0.1"
FRAME_MS = 20
FRAME_NS = FRAME_MS * 1_000_000
FRAME_SAMPLES = 160
PT_PCMU = 0
#: Linux values (asm-generic/socket.h); Python's socket module does not export them.
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
_TIMESPEC = struct.Struct("@qq")
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
_RTP_HEADER = struct.Struct("!BBHII")
#: mu-law codes of +0 and -0: a payload made only of these is digital silence.
_ULAW_ZERO = b"\xff\x7f"
#: A leg whose agent has sent nothing for this long is over: it stops talking.
IDLE_STOP_NS = 1_000_000_000

PATTERNS = ("tone", "markers", "silence")
#: Caller tone: 400 Hz is exactly 8 cycles per 20 ms frame, so every frame is the same.
TONE_HZ = 400.0
TONE_DBFS = -20.0
#: ``markers``: one tone frame, then silence, every MARKER_PERIOD frames (100 ms). The silence
#: is longer than any soxr quality up to MQ holds back, so every onset stands alone. With
#: several legs, leg i uses MARKER_PERIOD + i frames, so the spacing of the onsets the
#: realtime server sees tells which leg (call) they came from.
MARKER_PERIOD = 5


def tone_pcm(samples: int, rate: int = 8000, hz: float = TONE_HZ, dbfs: float = TONE_DBFS) -> bytes:
    """PCM16 LE sine of ``samples`` samples at an RMS level of ``dbfs``."""
    t = np.arange(samples) / rate
    amplitude = 32767 * 10 ** (dbfs / 20) * np.sqrt(2)
    return np.rint(np.sin(2 * np.pi * hz * t) * amplitude).astype("<i2").tobytes()


def marker_period(leg_index: int) -> int:
    """Frames between marker onsets of leg ``leg_index`` (``markers`` pattern)."""
    return MARKER_PERIOD + leg_index


def pattern_payloads(pattern: str, leg_index: int = 0) -> list[bytes]:
    """The PCMU payloads a leg cycles through, one per 20 ms frame."""
    tone = ulaw_encode(tone_pcm(FRAME_SAMPLES))
    silence = ulaw_encode(bytes(FRAME_SAMPLES * 2))
    if pattern == "tone":
        return [tone]
    if pattern == "markers":
        return [tone] + [silence] * (marker_period(leg_index) - 1)
    if pattern == "silence":
        return [silence]
    raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")


def audible(payload: bytes) -> bool:
    """True when a PCMU payload carries anything but digital silence."""
    return bool(payload.translate(None, _ULAW_ZERO))


def bind_rtp_pair() -> tuple[socket.socket, socket.socket]:
    """A bound RTP socket on an even port and its RTCP neighbour (held, never read)."""
    for _ in range(200):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind((HOST, 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65000:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind((HOST, port + 1))
            except OSError:
                rtcp.close()
            else:
                return rtp, rtcp
        rtp.close()
    raise RuntimeError("no free RTP/RTCP port pair on 127.0.0.1")


class Leg:
    """One call's RTP end: what it sent when, and every packet it received."""

    def __init__(self, payloads: list[bytes], keep_audio: bool) -> None:
        self.sock, self._rtcp = bind_rtp_pair()
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.port: int = self.sock.getsockname()[1]
        self.remote: tuple[str, int] | None = None
        self._payloads = payloads
        self._header = bytearray(_RTP_HEADER.size)
        self._seq = random.randrange(1 << 16)
        self._ssrc = random.randrange(1 << 32)
        self.frames_sent = 0
        self.last_rx_ns = 0
        self.finished = False
        self.tx_ns = array("q")  # monotonic time of each send
        self.tx_late_ns = array("q")  # how late each send was against its 20 ms schedule
        self.rx_ns = array("q")  # kernel arrival time, monotonic clock
        self.rx_seq = array("H")
        self.rx_audible = bytearray()
        self.rx_payload: bytearray | None = bytearray() if keep_audio else None

    def send(self, due_ns: int, now_ns: int) -> None:
        assert self.remote is not None
        payload = self._payloads[self.frames_sent % len(self._payloads)]
        _RTP_HEADER.pack_into(
            self._header,
            0,
            0x80,
            PT_PCMU,
            self._seq,
            (self.frames_sent * FRAME_SAMPLES) & 0xFFFFFFFF,
            self._ssrc,
        )
        try:
            self.sock.sendmsg((self._header, payload), (), 0, self.remote)
        except OSError:
            return  # the agent's port is gone (call over): nothing to measure
        self._seq = (self._seq + 1) & 0xFFFF
        self.frames_sent += 1
        self.tx_ns.append(now_ns)
        self.tx_late_ns.append(now_ns - due_ns)

    def drain(self, realtime_offset_ns: int) -> bool:
        """Read every queued packet; True when this was the leg's first packet."""
        first = False
        while True:
            try:
                data, ancdata, _flags, address = self.sock.recvmsg(2048, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                return first
            if len(data) < _RTP_HEADER.size:
                continue
            arrival = time.monotonic_ns()
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                    arrival = sec * 1_000_000_000 + nsec - realtime_offset_ns
            if self.remote is None:
                self.remote = address
                first = True
            payload = data[_RTP_HEADER.size :]
            self.last_rx_ns = arrival
            self.rx_ns.append(arrival)
            self.rx_seq.append(struct.unpack_from("!H", data, 2)[0])
            self.rx_audible.append(audible(payload))
            if self.rx_payload is not None:
                self.rx_payload += payload.ljust(FRAME_SAMPLES, b"\xff")[:FRAME_SAMPLES]

    def close(self) -> None:
        self.sock.close()
        self._rtcp.close()


def _realtime_offset_ns() -> int:
    return time.time_ns() - time.monotonic_ns()


class RtpCaller:
    """Runs many legs on one thread: a heap of send deadlines and one epoll for receiving."""

    def __init__(
        self,
        legs: int,
        pattern: str = "tone",
        keep_audio: bool = False,
        skew_ppm: float = 0.0,
        marker_legs: range = range(0),
    ) -> None:
        """The legs in ``marker_legs`` send the ``markers`` pattern whatever ``pattern`` is
        (the capacity benchmark times the inbound path on a sample of its calls)."""
        self.pattern = pattern
        self.legs = [
            Leg(pattern_payloads("markers" if i in marker_legs else pattern, i), keep_audio)
            for i in range(legs)
        ]
        self.stop_requested = False
        # A leg starts when the agent's first packet arrives, that is just after the agent's
        # media clock ticked; sending exactly every 20 ms from there would pin every frame to
        # the same spot in the agent's 20 ms cycle. A real caller's clock is independent: a
        # random start and a slightly slow clock (``skew_ppm``) sweep through all phases.
        self.frame_ns = round(FRAME_NS * (1 + skew_ppm / 1e6))

    @property
    def ports(self) -> list[int]:
        return [leg.port for leg in self.legs]

    def run(self, max_seconds: float) -> None:
        """Serve every leg until ``stop_requested`` or ``max_seconds`` have passed."""
        selector = selectors.EpollSelector()
        for index, leg in enumerate(self.legs):
            selector.register(leg.sock, selectors.EVENT_READ, index)
        schedule: list[tuple[int, int]] = []  # (due time, leg index)
        end_ns = time.monotonic_ns() + int(max_seconds * 1e9)
        offset_ns = _realtime_offset_ns()
        offset_at = time.monotonic_ns()
        try:
            while not self.stop_requested:
                now = time.monotonic_ns()
                if now >= end_ns:
                    break
                if now - offset_at > 1_000_000_000:
                    # NTP may slew the realtime clock; keep the conversion current.
                    offset_ns, offset_at = _realtime_offset_ns(), now
                self._send_due(schedule, now)
                wait_ns = schedule[0][0] - time.monotonic_ns() if schedule else 50_000_000
                for key, _ in selector.select(max(wait_ns, 0) / 1e9):
                    leg = self.legs[key.data]
                    if leg.drain(offset_ns) and not leg.finished:
                        start = time.monotonic_ns() + random.randrange(self.frame_ns)
                        heapq.heappush(schedule, (start, key.data))
        finally:
            selector.close()

    def _send_due(self, schedule: list[tuple[int, int]], now: int) -> None:
        while schedule and schedule[0][0] <= now:
            due, index = heapq.heappop(schedule)
            leg = self.legs[index]
            if now - leg.last_rx_ns > IDLE_STOP_NS:
                leg.finished = True
                continue
            leg.send(due, now)
            heapq.heappush(schedule, (due + self.frame_ns, index))

    def save(self, path: Path) -> None:
        """Every leg's record as numpy arrays named ``<leg>_<field>``."""
        arrays: dict[str, Any] = {"ports": np.array(self.ports, dtype=np.int32)}
        for index, leg in enumerate(self.legs):
            arrays[f"{index}_tx_ns"] = np.frombuffer(leg.tx_ns, dtype=np.int64)
            arrays[f"{index}_tx_late_ns"] = np.frombuffer(leg.tx_late_ns, dtype=np.int64)
            arrays[f"{index}_rx_ns"] = np.frombuffer(leg.rx_ns, dtype=np.int64)
            arrays[f"{index}_rx_seq"] = np.frombuffer(leg.rx_seq, dtype=np.uint16)
            arrays[f"{index}_rx_audible"] = np.frombuffer(bytes(leg.rx_audible), dtype=np.uint8)
            if leg.rx_payload is not None:
                arrays[f"{index}_rx_payload"] = np.frombuffer(bytes(leg.rx_payload), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            np.savez(out, **arrays)

    def close(self) -> None:
        for leg in self.legs:
            leg.close()


@dataclass
class LegRecord:
    """One leg's record, loaded back by the benchmark that ran the caller."""

    port: int
    tx_ns: np.ndarray
    tx_late_ns: np.ndarray
    rx_ns: np.ndarray
    rx_seq: np.ndarray
    rx_audible: np.ndarray
    rx_payload: np.ndarray | None

    def rx_pcm(self) -> np.ndarray:
        """Received audio, 8 kHz int16, in arrival order (needs ``keep_audio``)."""
        if self.rx_payload is None:
            raise ValueError("this caller ran without keep_audio")
        return np.frombuffer(ulaw_decode(self.rx_payload.tobytes()), dtype="<i2")


def load_legs(path: Path) -> list[LegRecord]:
    with np.load(path) as data:
        names = set(data.files)
        return [
            LegRecord(
                port=int(port),
                tx_ns=data[f"{i}_tx_ns"],
                tx_late_ns=data[f"{i}_tx_late_ns"],
                rx_ns=data[f"{i}_rx_ns"],
                rx_seq=data[f"{i}_rx_seq"],
                rx_audible=data[f"{i}_rx_audible"],
                rx_payload=data[f"{i}_rx_payload"] if f"{i}_rx_payload" in names else None,
            )
            for i, port in enumerate(data["ports"])
        ]


def _leg_range(text: str) -> range:
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="RTP caller legs for the benchmarks")
    parser.add_argument("--legs", type=int, required=True)
    parser.add_argument("--pattern", choices=PATTERNS, default="tone")
    parser.add_argument("--keep-audio", action="store_true")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--skew-ppm", type=float, default=0.0, help="caller clock slower by")
    parser.add_argument(
        "--marker-legs", type=_leg_range, default=range(0),
        help="FIRST-LAST: the legs (0-based, inclusive) that send markers whatever --pattern is",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    caller = RtpCaller(args.legs, args.pattern, args.keep_audio, args.skew_ppm, args.marker_legs)

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        caller.stop_requested = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(json.dumps({"ports": caller.ports}), flush=True)
    try:
        caller.run(args.max_seconds)
        caller.save(args.out)
    finally:
        caller.close()
    print(json.dumps({"saved": str(args.out)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
