"""A SIP stack's own log lines, through structlog, rate-limited by kind.

Stacks log every datagram they cannot parse (PJSIP quotes the whole packet), so 800 garbage
datagrams would otherwise write hundreds of lines. Lines of one kind (the text with its
numbers and addresses blanked) pass once per 10 s, with a count of those held back, cut to a
quotable length. Shared by the engines' log forwarders.
"""

from __future__ import annotations

import re

import structlog

from agent.observe.ratelimit import KeyedRateLimit, quote

log = structlog.get_logger("sip")
#: Digits, addresses and hex blanked: what makes two stack log lines "the same kind".
_LOG_KIND = re.compile(r"[0-9a-fA-Fx.:]{2,}")


class StackLog:
    """Writes a stack's log lines as ``event`` lines (``error`` or ``warning``)."""

    def __init__(self, event: str, interval_s: float = 10.0) -> None:
        self.event = event
        self._limit = KeyedRateLimit(interval_s=interval_s)

    def line(self, message: str, error: bool = False) -> None:
        text = message.strip()
        allowed, held = self._limit.check(_LOG_KIND.sub("#", text[:60]))
        if not allowed:
            return
        emit = log.error if error else log.warning
        emit(self.event, message=quote(text), held_back=held)
