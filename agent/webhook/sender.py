"""Delivers the outbox to the webhook receiver: signed POSTs, retried with backoff.

A delivery goes to the outbox first (``submit``, the file write in a worker thread so a slow
disk never holds up a call), then is attempted at once. 2xx: delivered, and its file is
removed before anything else happens, so nothing sends it again. 408, 429, 5xx, a timeout
or a refused connection: tried again after ``retry_delay`` (a ``Retry-After`` the receiver
sends is honoured up to ``max_retry_s``), until ``retry_for_h`` after the call. Any other
answer (4xx, 3xx): it would fail the same way each time, so it is given up at once and kept
in ``failed/``. On start, everything pending in the outbox is attempted again.

What reaches the log: delivery and call ids, attempts, HTTP status or the kind of error, and
the receiver's origin (scheme, host, port): never the secret, a signature, the path or query
of the URL (which may carry a token) or the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import structlog

from agent.config import WebhookSettings
from agent.observe.ratelimit import KeyedRateLimit
from agent.webhook.backoff import retry_delay
from agent.webhook.outbox import Entry, Outbox, OutboxFull
from agent.webhook.signing import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)

log = structlog.get_logger("webhook")

#: Attempts in flight at once: a receiver back after an outage gets the backlog a few at a
#: time, not all at once.
MAX_PARALLEL = 4
#: How long a stopping agent lets attempts in flight finish (cut off: sent again next start).
STOP_GRACE_S = 2.0
#: Statuses worth trying again: the receiver is busy or failing, not refusing this request.
RETRYABLE = frozenset({408, 429})
#: A failed attempt is logged at most once per this many seconds (the rest are counted), so
#: a receiver down for a day with a large backlog does not flood the log.
FAILURE_LOG_INTERVAL_S = 30.0


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: what the log may show of it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    entry: Entry = field(compare=False)
    failures: int = field(default=0, compare=False)


class WebhookSender:
    """Sends the deliveries of ``outbox`` to ``settings.url``, signed with ``secret``."""

    def __init__(
        self,
        settings: WebhookSettings,
        secret: str,
        outbox: Outbox,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self._secret = secret
        self._clock = clock
        self._queue: list[_Due] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._active: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._client: httpx2.AsyncClient | None = None
        self._failure_log = KeyedRateLimit(FAILURE_LOG_INTERVAL_S)
        #: Deliveries taken by the receiver (2xx) since start.
        self.delivered = 0

    async def start(self) -> None:
        """Queue what the outbox holds (a previous run's) and start sending."""
        self._client = httpx2.AsyncClient(timeout=self.settings.timeout_s, follow_redirects=False)
        entries = await asyncio.to_thread(self._scan)
        for entry in entries:
            self._schedule(entry, 0.0)
        log.info(
            "webhook_ready",
            receiver=origin(self.settings.url),
            outbox=str(self.outbox.directory),
            pending=len(entries),
        )
        self._loop_task = asyncio.create_task(self._run(), name="webhook-sender")

    def _scan(self) -> list[Entry]:
        self.outbox.directory.mkdir(parents=True, exist_ok=True)
        self.outbox.remove_stale_tmp()
        return self.outbox.pending()

    def submit(self, delivery_id: str, body: bytes, call_id: str = "") -> None:
        """Queue one delivery: written to the outbox, then sent. Returns at once."""
        task = asyncio.get_running_loop().create_task(self._put(delivery_id, body, call_id))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _put(self, delivery_id: str, body: bytes, call_id: str) -> None:
        try:
            entry = await asyncio.to_thread(self.outbox.put, delivery_id, body)
        except OutboxFull as exc:
            log.error("webhook_outbox_full", delivery_id=delivery_id, call_id=call_id, why=str(exc))
            return
        except OSError as exc:
            log.error(
                "webhook_outbox_write_failed",
                delivery_id=delivery_id,
                call_id=call_id,
                error=str(exc),
            )
            return
        log.info("webhook_queued", delivery_id=delivery_id, call_id=call_id, bytes=len(body))
        self._schedule(entry, 0.0)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Finish queueing what was submitted (it is on disk then), stop sending; what is
        not delivered yet stays in the outbox for the next start."""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=timeout_s)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        # What is due now (the last calls' first attempts) still starts; those and the
        # attempts in flight get a moment to finish before they are cut off.
        self._launch_due()
        if self._active:
            await asyncio.wait(set(self._active), timeout=min(timeout_s, STOP_GRACE_S))
        for task in list(self._active):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        pending = len(self._queue) + len(self._active)
        if pending:
            log.info("webhook_pending_at_stop", pending=pending)

    @property
    def pending(self) -> int:
        """Deliveries queued here and not yet delivered or given up."""
        return len(self._queue) + len(self._active) + len(self._writes)

    # -- scheduling ----------------------------------------------------------------------------
    def _schedule(self, entry: Entry, delay_s: float, failures: int = 0) -> None:
        due = _Due(self._clock() + delay_s, next(self._seq), entry, failures)
        heapq.heappush(self._queue, due)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self._launch_due()
            wait = None
            if self._queue and len(self._active) < MAX_PARALLEL:
                wait = max(0.0, self._queue[0].at - now)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives as its inner wait ends, and this loop would then outlive close().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def _launch_due(self) -> float:
        """Start the attempts that are due, as many as may run at once; the time now."""
        now = self._clock()
        while self._queue and self._queue[0].at <= now and len(self._active) < MAX_PARALLEL:
            due = heapq.heappop(self._queue)
            task = asyncio.create_task(self._attempt(due))
            self._active.add(task)
            task.add_done_callback(self._attempt_done)
        return now

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook_attempt_crashed", error=repr(task.exception()))

    # -- one attempt ---------------------------------------------------------------------------
    async def _attempt(self, due: _Due) -> None:
        entry = due.entry
        claim = await asyncio.to_thread(self.outbox.claim, entry)
        if claim is None:
            if entry.path.exists():
                # Another agent sharing this outbox is sending it right now.
                self._schedule(entry, self.settings.first_retry_s, due.failures)
            return
        try:
            status, retry_after, error = await self._post(claim.body, entry, due.failures + 1)
        except BaseException:
            claim.release()
            raise
        if status is not None and 200 <= status < 300:
            # First of all: the file goes, so neither a retry nor a restart sends it again.
            await asyncio.to_thread(claim.delivered)
            self.delivered += 1
            log.info(
                "webhook_delivered",
                delivery_id=entry.delivery_id,
                call_id=_call_id(claim.body),
                status=status,
                attempts=due.failures + 1,
            )
            return
        if status is not None and status not in RETRYABLE and status < 500:
            target = await asyncio.to_thread(claim.give_up)
            log.error(
                "webhook_given_up",
                delivery_id=entry.delivery_id,
                call_id=_call_id(claim.body),
                status=status,
                attempts=due.failures + 1,
                kept=str(target),
            )
            return
        failures = due.failures + 1
        if time.time() - entry.queued_at > self.settings.retry_for_h * 3600:
            target = await asyncio.to_thread(claim.give_up)
            log.error(
                "webhook_given_up",
                delivery_id=entry.delivery_id,
                status=status,
                call_id=_call_id(claim.body),
                error=error,
                attempts=failures,
                why=f"still failing after {self.settings.retry_for_h:g} h",
                kept=str(target),
            )
            return
        claim.release()
        delay = retry_delay(failures, self.settings.first_retry_s, self.settings.max_retry_s)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.max_retry_s))
        allowed, held = self._failure_log.check("attempt_failed")
        if allowed:
            log.warning(
                "webhook_attempt_failed",
                delivery_id=entry.delivery_id,
                status=status,
                error=error,
                attempt=failures,
                retry_in_s=round(delay, 1),
                **({"similar_lines_held": held} if held else {}),
            )
        self._schedule(entry, delay, failures)

    async def _post(
        self, body: bytes, entry: Entry, attempt: int
    ) -> tuple[int | None, float | None, str]:
        """(HTTP status or None, Retry-After seconds or None, what went wrong if no status)."""
        assert self._client is not None
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "voice-agent",
            DELIVERY_HEADER: entry.delivery_id,
            ATTEMPT_HEADER: str(attempt),
            # Signed at each attempt: its t is now, within the receiver's freshness window.
            SIGNATURE_HEADER: signature_header(self._secret, body),
        }
        try:
            response = await self._client.post(self.settings.url, content=body, headers=headers)
        except httpx2.TimeoutException:
            return None, None, "timeout"
        except httpx2.HTTPError as exc:
            return None, None, type(exc).__name__
        except OSError as exc:
            return None, None, type(exc).__name__
        return response.status_code, _retry_after(response.headers.get("retry-after")), ""


def _call_id(body: bytes) -> str:
    """The call a delivery is about, for its log lines ("" when the body has none)."""
    with contextlib.suppress(ValueError):
        value = json.loads(body)
        if isinstance(value, dict):
            return str(value.get("call_id", ""))
    return ""


def _retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (the HTTP-date form is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def outbox_for(settings: WebhookSettings, records_dir: str) -> Outbox:
    """The outbox ``settings`` name (``<records_dir>/outbox`` by default)."""
    directory = Path(settings.outbox_dir) if settings.outbox_dir else Path(records_dir) / "outbox"
    return Outbox(directory, settings.max_pending)
