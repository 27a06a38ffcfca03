"""A reply produced by a worker thread and consumed by the protocol on the event loop.

Speech-to-text, the brain and text-to-speech run in a worker thread so the event loop never
waits on them. The worker fills a ``ReplyStream`` (first the plan: what will be said and
which function is called; then audio pieces as they are synthesized); the protocol reads it
without blocking and is woken through ``set_waker`` whenever something new is there.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

import structlog

from agent.local.replies import ReplyPlan

log = structlog.get_logger(__name__)


class ReplyStream:
    """Thread-safe hand-off of one reply: a producer thread writes, the event loop reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: ReplyPlan | None = None
        self._chunks: deque[bytes] = deque()
        self._finished = False
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        self._waker: Callable[[], None] | None = None

    # ---- producer side (worker thread) -------------------------------------------------------

    def set_plan(self, plan: ReplyPlan) -> None:
        with self._lock:
            self._plan = plan
        self._wake()

    def put_audio(self, pcm24k: bytes) -> None:
        """Queue PCM16 24 kHz audio; ignored once the reader cancelled."""
        if not pcm24k or self._cancelled.is_set():
            return
        with self._lock:
            self._chunks.append(pcm24k)
        self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        """No more audio will come; ``error`` says the producer failed. Only the first call
        counts."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._error = error
        self._wake()

    @property
    def cancelled(self) -> bool:
        """True once the reader gave up on the reply: the producer should stop early."""
        return self._cancelled.is_set()

    # ---- consumer side (event loop) ----------------------------------------------------------

    def set_waker(self, waker: Callable[[], None]) -> None:
        """Call ``waker`` (from any thread) whenever the stream changes."""
        with self._lock:
            self._waker = waker
            ready = self._plan is not None or self._chunks or self._finished
        if ready:
            # The producer may have been faster than us: do not lose that wake-up.
            waker()

    @property
    def plan(self) -> ReplyPlan | None:
        with self._lock:
            return self._plan

    def read(self) -> bytes | None:
        """The next audio piece, or None when nothing is queued right now."""
        with self._lock:
            return self._chunks.popleft() if self._chunks else None

    @property
    def finished(self) -> bool:
        """True when the producer is done and every piece was read."""
        with self._lock:
            return self._finished and not self._chunks

    @property
    def error(self) -> BaseException | None:
        with self._lock:
            return self._error

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            self._chunks.clear()

    def _wake(self) -> None:
        with self._lock:
            waker = self._waker
        if waker is not None:
            waker()


def start_reply(executor: Executor, produce: Callable[[ReplyStream], None]) -> ReplyStream:
    """Run ``produce`` on ``executor``, filling a new stream; errors end the stream."""
    stream = ReplyStream()

    def job() -> None:
        if stream.cancelled:
            stream.finish()
            return
        try:
            produce(stream)
        except Exception as exc:
            log.exception("local reply producer failed")
            stream.finish(exc)
            return
        stream.finish()

    executor.submit(job)
    return stream
