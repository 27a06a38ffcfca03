"""The media port joining one call's audio to Python.

Both frame callbacks run on PJSIP's media clock thread, every 20 ms, through SWIG and the GIL.
They only copy bytes and touch a deque or the playout buffer's short lock: never PJSUA2, never
asyncio, never logging. The asyncio side drains ``inbound`` from the SIP poll loop, which the
``FrameWaker`` wakes when caller frames arrive (one non-blocking pipe write per media tick).
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from typing import ClassVar

import pjsua2 as pj

from agent.audio.pcm import FRAME_MS, SIP_RATE, frame_bytes
from agent.sip.engine import FrameSource, SilenceSource
from agent.sip.pjsip.frame_bytes import read_frame, write_frame

#: Inbound frames kept while the event loop is late (1 s); older ones are dropped and counted.
INBOUND_LIMIT = 50


class FrameWaker:
    """Wakes the event loop when caller frames arrive, instead of the loop polling for them.

    Polling every few ms costs a timer wake-up each time whether or not a frame came (on a VM
    ~100 us of CPU apiece, 30 ms/s for an idle agent) and adds up to a poll interval of delay
    to every frame. Here the clock thread writes one byte to a non-blocking pipe once a tick's
    frames are in; the loop reads the pipe. The write never blocks: a full pipe means a
    wake-up is due anyway.

    Once per tick, not once per frame: in a tick PJSIP's conference bridge reads every port
    (``onFrameRequested``), then writes every port (``onFrameReceived``), so the tick's frames
    are all in when as many have arrived as were requested. Waking the loop at the first one
    would have it fight the clock thread for the GIL during the rest of the tick. A frame that
    no request matched is announced at the next tick's first request at the latest.

    Order matters: the loop calls ``consume`` (drain, then clear ``pending``) before it
    drains the frame queues, and the clock thread appends a frame before it announces it,
    so a frame is always either seen by this pass or announced by a new byte.
    """

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self.pending = False
        self._requested = 0  # ports read so far this tick
        self._received = 0  # frames arrived so far this tick, not yet announced

    def fileno(self) -> int:
        """The end to watch for reading (``loop.add_reader``)."""
        return self._read_fd

    def frame_requested(self) -> None:  # clock thread: a port is read
        if self._received:
            self._announce()  # the previous tick had more frames than reads
        self._requested += 1

    def frame_arrived(self) -> None:  # clock thread: a port was given a caller frame
        self._received += 1
        if self._received >= self._requested:
            self._announce()

    def _announce(self) -> None:
        self._requested = self._received = 0
        if self.pending:
            return
        self.pending = True
        # A full pipe means a wake-up is due anyway; a closed one, that we are shutting down.
        with contextlib.suppress(OSError):
            os.write(self._write_fd, b"\0")

    def consume(self) -> None:  # loop thread
        try:
            # Usually one byte: a short read means the pipe is empty (no EAGAIN round trip).
            while len(os.read(self._read_fd, 512)) == 512:
                pass
        except OSError:
            pass  # drained (EAGAIN) or closed
        self.pending = False

    def close(self) -> None:
        fds, (self._read_fd, self._write_fd) = (self._read_fd, self._write_fd), (-1, -1)
        # -1 from now on: a late write must fail, not land in a file that reused the number.
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class BridgePort(pj.AudioMediaPort):
    """An ``AudioMediaPort`` at the call's codec rate (8 kHz G.711, 16 kHz G.722; the
    conference bridge resamples between it and its own clock): caller frames into
    ``inbound``, agent frames from ``source``."""

    thisown: bool  # SWIG's: whether Python owns (and may delete) the C++ object
    #: The process's waker, set by the SIP endpoint (one PJSUA2 library per process).
    waker: ClassVar[FrameWaker | None] = None

    def __init__(self, name: str, rate: int = SIP_RATE) -> None:
        super().__init__()
        self.rate = rate
        self.frame_bytes = frame_bytes(rate)
        self.inbound: deque[bytes] = deque()
        self.source: FrameSource = SilenceSource(rate)
        self.frames_in = 0
        self.frames_out = 0
        self.inbound_dropped = 0
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = rate
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = FRAME_MS * 1000
        self.createPort(name, fmt)

    def close(self) -> None:
        """Delete the C++ port now, while this Python object is alive (loop thread only).

        PJSIP's clock thread may be inside a frame callback of this port at any moment. Left to
        Python's deallocation, the C++ destructor would run while the object it calls back is
        being torn down. Deleting it explicitly, with the object still alive, lets the
        destructor wait (pjsua2 takes the port's lock, with the GIL released) for a callback in
        flight to return against a whole object; after it, no callback comes. Only the Python
        attributes (counters, ``inbound``) may be used afterwards.
        """
        self.source = SilenceSource(self.rate)
        if self.thisown:
            pj.AudioMediaPort.__swig_destroy__(self)
            self.thisown = False

    def stats(self) -> dict[str, int]:
        """Frame counters of the call, with the source's own when it keeps any (Playout)."""
        counters = {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "inbound_dropped": self.inbound_dropped,
        }
        source_stats = getattr(self.source, "stats", None)
        if callable(source_stats):
            counters.update(source_stats())
        return counters

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:  # clock thread
        write_frame(frame, self.source.pull())
        self.frames_out += 1
        waker = self.waker
        if waker is not None:
            waker.frame_requested()

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:  # clock thread
        if frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
            return
        payload = read_frame(frame)
        if len(payload) != self.frame_bytes:
            return
        inbound = self.inbound
        if len(inbound) >= INBOUND_LIMIT:
            inbound.popleft()
            self.inbound_dropped += 1
        inbound.append(payload)
        self.frames_in += 1
        waker = self.waker
        if waker is not None:
            waker.frame_arrived()
