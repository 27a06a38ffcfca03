"""How an outbound call turned out, from what SIP said: one word each, and the exit status
``voice-agent call`` ends with (README "Outbound calls")."""

from __future__ import annotations

ANSWERED = "answered"
BUSY = "busy"
NO_ANSWER = "no_answer"
REJECTED = "rejected"
REFUSED = "refused"
FAILED = "failed"

#: ``voice-agent call``'s exit status per outcome (2 stays a configuration or usage error).
EXIT_STATUS = {ANSWERED: 0, BUSY: 3, NO_ANSWER: 4, REJECTED: 5, REFUSED: 6, FAILED: 7}

#: Final responses that mean the callee is busy (486 Busy Here, 600 Busy Everywhere).
BUSY_CODES = frozenset({486, 600})
#: ... that nobody picked up: the far end timed out, the callee is unavailable, or the call
#: was cancelled (by our ring timeout, or the network's).
NO_ANSWER_CODES = frozenset({408, 480, 487})


def classify(
    *,
    answered: bool,
    code: int,
    ring_timed_out: bool,
    far_end_responded: bool,
    agent_failed: bool = False,
) -> str:
    """The outcome of a call we placed that has ended.

    ``code``: the final SIP status; ``ring_timed_out``: we CANCELled it after the ring
    timeout; ``far_end_responded``: any SIP response of the far end reached us (without one,
    a 408 or 503 is the network's, not the callee's, and a ring timeout found nobody);
    ``agent_failed``: the agent ended it for a fault of its own (no realtime session).
    """
    if agent_failed:
        return FAILED
    if answered:
        return ANSWERED
    if not far_end_responded:
        # Not even a 100 Trying before the ring timeout, or a timeout or transport error of
        # our own stack's: nobody is there (a dead host, a broken route).
        return FAILED
    if ring_timed_out:
        return NO_ANSWER
    if code in BUSY_CODES:
        return BUSY
    if code in NO_ANSWER_CODES:
        return NO_ANSWER
    if 300 <= code <= 699:
        return REJECTED
    return FAILED
