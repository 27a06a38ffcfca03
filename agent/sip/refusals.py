"""The log line for each request the request policy answered instead of the stack.

Shared by every engine's request gate, so a refusal reads the same whatever the engine, and
rate-limited: one line per source, method and answer every 10 s at most, so a scan or a
flood never turns into a flood of log lines.
"""

from __future__ import annotations

import structlog

from agent.observe.ratelimit import KeyedRateLimit
from agent.sip.message import SipRequest
from agent.sip.request_policy import Answer

log = structlog.get_logger("sip")


class RefusalLog:
    def __init__(self, interval_s: float = 10.0) -> None:
        self._limit = KeyedRateLimit(interval_s=interval_s)

    def answered(self, request: SipRequest, answer: Answer) -> None:
        """Log ``answer`` to ``request`` when it refused something worth a line."""
        if 0 < answer.code < 300 or request.method == "OPTIONS" or answer.code == 401:
            # 401: the first half of a peer's digest handshake, not a refusal.
            # OPTIONS is a dispatcher's health probe: 503 while full is its answer, not news.
            return
        allowed, held = self._limit.check((request.source_ip, request.method, answer.code))
        if allowed:
            if not answer.code:
                event = "sip_request_dropped"
            elif request.method == "INVITE":
                event = "call_rejected"
            else:
                event = "sip_request_refused"
            log.warning(
                event,
                method=request.method,
                code=answer.code,
                reason=answer.why,
                source=f"{request.source_ip}:{request.source_port}",
                sip_call_id=(request.header("call-id") or "")[:100],
                held_back=held,
            )
