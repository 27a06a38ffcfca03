"""The webhook outbox and sender against a real HTTP receiver on 127.0.0.1: down at first
(connection refused, then 503), it still gets exactly one signed delivery, also after the
sender was stopped with the delivery pending and started again."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from pathlib import Path

import pytest
import structlog

from agent.config import WebhookSettings
from agent.webhook.outbox import FAILED_DIR, Outbox, OutboxFull
from agent.webhook.payload import call_ended_body
from agent.webhook.sender import WebhookSender
from agent.webhook.signing import verify
from testbed.webhook_receiver import Received, Reply, WebhookReceiver

pytestmark = pytest.mark.timeout(30)

SECRET = "whsec-outbox-test-secret"


def _settings(url: str, **extra: float) -> WebhookSettings:
    values = {"first_retry_s": 0.05, "max_retry_s": 0.2, "timeout_s": 2.0, **extra}
    return WebhookSettings(url=url, secret_env="HOOK_SECRET", **values)  # type: ignore[arg-type]


def _body(delivery_id: str, call_id: str = "01CALL") -> bytes:
    record = {"call_id": call_id, "ended_by": "caller", "reason": "the caller hung up"}
    return call_ended_body(delivery_id, record, [{"role": "user", "text": "hello"}])


def _assert_signed(request: Received) -> None:
    header = request.headers["x-voice-agent-signature"]
    # Signed at this attempt: its t is the time it was sent, not when the call ended.
    timestamp = int(header.split(",")[0].removeprefix("t="))
    assert abs(timestamp - request.at) <= 2
    assert verify(SECRET, request.body, header, now_s=request.at, tolerance_s=5)


async def _until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


# -- the outbox on disk ------------------------------------------------------------------------
def test_a_delivery_is_written_whole_and_listed_oldest_first(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox", max_pending=2)
    first = outbox.put("01A", b'{"a":1}')
    outbox.put("01B", b'{"b":2}')
    assert first.path.read_bytes() == b'{"a":1}'
    assert [entry.delivery_id for entry in outbox.pending()] == ["01A", "01B"]
    assert not list(outbox.directory.glob(".tmp-*"))
    assert os.stat(first.path).st_mode & 0o777 == 0o600
    with pytest.raises(OutboxFull):
        outbox.put("01C", b"{}")


def test_one_attempt_at_a_time_holds_a_delivery(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_pending=10)
    entry = outbox.put("01A", b"{}")
    claim = outbox.claim(entry)
    assert claim is not None and claim.body == b"{}"
    # A second sender (another agent sharing the outbox) cannot take it meanwhile.
    assert outbox.claim(entry) is None
    claim.delivered()
    assert not entry.path.exists()
    assert outbox.claim(entry) is None


def test_a_given_up_delivery_is_kept_in_failed(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_pending=10)
    entry = outbox.put("01A", b"{}")
    claim = outbox.claim(entry)
    assert claim is not None
    kept = claim.give_up()
    assert kept == tmp_path / FAILED_DIR / "01A.json" and kept.read_bytes() == b"{}"
    assert outbox.pending() == []


def test_stale_temporary_files_are_cleared(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_pending=10)
    stale, fresh = tmp_path / ".tmp-01OLD", tmp_path / ".tmp-01NEW"
    stale.write_bytes(b"{")
    fresh.write_bytes(b"{")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert outbox.remove_stale_tmp() == 1
    assert not stale.exists() and fresh.exists()


# -- the sender and a receiver -----------------------------------------------------------------
async def test_a_receiver_down_at_first_gets_exactly_one_signed_delivery(tmp_path: Path) -> None:
    receiver = WebhookReceiver(statuses=[503, 503, 200])
    outbox = Outbox(tmp_path / "outbox", 100)
    sender = WebhookSender(_settings(receiver.url), SECRET, outbox)
    await sender.start()
    try:
        sender.submit("01DELIVERY", _body("01DELIVERY"), "01CALL")
        # Nothing listens yet: connections are refused, and the file waits.
        await _until(lambda: len(outbox.pending()) == 1)
        await asyncio.sleep(0.3)
        assert len(outbox.pending()) == 1
        await receiver.start()
        requests = await receiver.wait_for(3, 10)
        await _until(lambda: sender.delivered == 1)
        await asyncio.sleep(0.5)  # nothing more comes after the 2xx
    finally:
        await sender.close()
        await receiver.stop()
    assert len(receiver.requests) == 3
    assert outbox.pending() == []
    for request in requests:
        _assert_signed(request)
        assert request.method == "POST" and request.path == "/hook?token=not-for-logs"
        assert request.headers["x-voice-agent-delivery"] == "01DELIVERY"
        assert request.headers["content-type"] == "application/json"
        assert request.body == requests[0].body
    attempts = [int(r.headers["x-voice-agent-attempt"]) for r in requests]
    assert attempts == sorted(attempts) and attempts[-1] > 3  # refused ones came first
    body = requests[-1].json()
    assert body["type"] == "call.ended" and body["call_id"] == "01CALL"
    assert body["record"]["ended_by"] == "caller"
    assert body["transcript"] == [{"role": "user", "text": "hello"}]


async def test_a_pending_delivery_survives_a_restart(tmp_path: Path) -> None:
    receiver = WebhookReceiver(statuses=[200])
    outbox = Outbox(tmp_path / "outbox", 100)
    first = WebhookSender(_settings(receiver.url), SECRET, outbox)
    await first.start()
    first.submit("01RESTART", _body("01RESTART"), "01CALL")
    await _until(lambda: len(outbox.pending()) == 1)
    await first.close()  # stopped while the receiver is still down
    assert [entry.delivery_id for entry in outbox.pending()] == ["01RESTART"]

    await receiver.start()
    second = WebhookSender(_settings(receiver.url), SECRET, Outbox(tmp_path / "outbox", 100))
    await second.start()
    try:
        (request,) = await receiver.wait_for(1, 10)
        await _until(lambda: second.delivered == 1)
        await asyncio.sleep(0.3)
    finally:
        await second.close()
        await receiver.stop()
    assert len(receiver.requests) == 1
    _assert_signed(request)
    assert request.headers["x-voice-agent-delivery"] == "01RESTART"
    assert request.body == _body("01RESTART")
    assert outbox.pending() == []


@pytest.mark.parametrize("status", [400, 401, 404, 410])
async def test_a_client_error_is_given_up_at_once(tmp_path: Path, status: int) -> None:
    outbox = Outbox(tmp_path / "outbox", 100)
    async with WebhookReceiver(statuses=[status]) as receiver:
        sender = WebhookSender(_settings(receiver.url), SECRET, outbox)
        await sender.start()
        sender.submit("01GIVEUP", _body("01GIVEUP"))
        await _until(lambda: (outbox.directory / FAILED_DIR / "01GIVEUP.json").exists())
        await asyncio.sleep(0.3)
        await sender.close()
    assert len(receiver.requests) == 1
    assert outbox.pending() == []


async def test_408_429_and_slow_answers_are_retried(tmp_path: Path) -> None:
    answers = iter(
        [Reply(408), Reply(429, headers={"Retry-After": "0"}), Reply(200, delay_s=1.0), Reply(200)]
    )
    outbox = Outbox(tmp_path / "outbox", 100)
    async with WebhookReceiver(handler=lambda _request: next(answers)) as receiver:
        sender = WebhookSender(_settings(receiver.url, timeout_s=0.3), SECRET, outbox)
        await sender.start()
        sender.submit("01RETRY", _body("01RETRY"))
        await _until(lambda: sender.delivered == 1)
        await sender.close()
    # 408, 429, a 200 that came after the 0.3 s timeout (so not known to be taken), 200.
    assert len(receiver.requests) == 4
    assert outbox.pending() == []


async def test_a_delivery_failing_past_retry_for_h_is_given_up(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox", 100)
    entry = outbox.put("01OLD", _body("01OLD"))
    old = time.time() - 2 * 3600
    os.utime(entry.path, (old, old))
    async with WebhookReceiver(statuses=[503]) as receiver:
        sender = WebhookSender(_settings(receiver.url, retry_for_h=1.0), SECRET, outbox)
        await sender.start()
        await _until(lambda: (outbox.directory / FAILED_DIR / "01OLD.json").exists())
        await sender.close()
    assert len(receiver.requests) == 1


async def test_the_log_never_shows_the_secret_or_the_url_path(tmp_path: Path) -> None:
    from agent.observe.logging import configure_logging

    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    try:
        outbox = Outbox(tmp_path / "outbox", 100)
        async with WebhookReceiver(statuses=[503, 200]) as receiver:
            sender = WebhookSender(_settings(receiver.url), SECRET, outbox)
            await sender.start()
            sender.submit("01LOG", _body("01LOG"))
            await _until(lambda: sender.delivered == 1)
            await sender.close()
    finally:
        # Later tests log in this process too (the local server): not into this buffer.
        structlog.reset_defaults()
    text = out.getvalue()
    events = [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]
    assert "webhook_delivered" in events and "webhook_attempt_failed" in events
    assert SECRET not in text and "not-for-logs" not in text and "v1=" not in text
