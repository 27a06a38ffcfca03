"""The webhook's signature scheme and retry schedule, as a receiver and an operator see them."""

from __future__ import annotations

import hashlib
import hmac

from agent.webhook.backoff import JITTER, retry_delay
from agent.webhook.signing import signature, signature_header, verify

SECRET = "whsec-test-0123456789"
BODY = b'{"type":"call.ended","call_id":"01J"}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = signature_header(SECRET, BODY, now_s=1_700_000_000.9)
    assert header.startswith("t=1700000000,v1=")
    # Computed here independently, as a receiver in any language would.
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert signature(SECRET, BODY, 1_700_000_000) == expected


def test_verify_accepts_a_fresh_signature_and_rejects_the_rest() -> None:
    now = 1_700_000_000.0
    header = signature_header(SECRET, BODY, now_s=now)
    assert verify(SECRET, BODY, header, now_s=now + 10)
    assert not verify(SECRET, BODY + b" ", header, now_s=now)  # body changed
    assert not verify("another-secret", BODY, header, now_s=now)
    assert not verify(SECRET, BODY, header, now_s=now + 301)  # a replay, too old
    assert not verify(SECRET, BODY, "v1=abc", now_s=now)
    assert not verify(SECRET, BODY, "t=x,v1=abc", now_s=now)
    # Several v1 values (a secret being rotated): one matching is enough.
    rotated = header.replace("v1=", "v1=00,v1=")
    assert verify(SECRET, BODY, rotated, now_s=now)


def test_each_send_signs_with_its_own_time() -> None:
    first = signature_header(SECRET, BODY, now_s=1000)
    later = signature_header(SECRET, BODY, now_s=1060)
    assert first != later
    assert verify(SECRET, BODY, later, now_s=1060)


def test_retries_start_within_seconds_then_double_up_to_the_cap() -> None:
    no_jitter = [retry_delay(n, 2.0, 600.0, jitter=lambda: 0.0) for n in range(1, 12)]
    assert no_jitter == [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]
    assert retry_delay(0, 2.0, 600.0) == 0.0
    # Days of failures stay finite and capped.
    assert retry_delay(10_000, 2.0, 600.0, jitter=lambda: 0.0) == 600.0


def test_jitter_stretches_a_wait_by_at_most_its_share_and_never_past_the_cap() -> None:
    assert retry_delay(1, 2.0, 600.0, jitter=lambda: 1.0) == 2.0 * (1 + JITTER)
    assert retry_delay(3, 2.0, 600.0, jitter=lambda: 0.5) == 8.0 * (1 + JITTER / 2)
    assert retry_delay(20, 2.0, 600.0, jitter=lambda: 1.0) == 600.0


def test_the_readme_receiver_snippet_verifies_the_agent_signature() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Webhooks", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    check = namespace["signed_by_agent"]
    header = signature_header(SECRET, BODY)
    assert check(SECRET.encode(), BODY, header)  # type: ignore[operator]
    assert not check(SECRET.encode(), BODY + b"x", header)  # type: ignore[operator]
    assert not check(b"wrong", BODY, header)  # type: ignore[operator]
    stale = signature_header(SECRET, BODY, now_s=1_000_000)
    assert not check(SECRET.encode(), BODY, stale)  # type: ignore[operator]
