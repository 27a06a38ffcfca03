"""The event loop's scheduling weight: ahead of the SIP stack's threads when cores run short.

On the baresip engine one thread, the asyncio loop, paces every call's audio (its media
ticker) and runs every call's bridge, while baresip runs a transmit thread of its own per
call, which wakes every 4 ms (when this was measured, baresip-python's audio source and
player added two more per call; the agent's own replace them now, ``agent.sip.baresip.source``
and ``.player``). At equal niceness the scheduler shares the cores among all of them alike. At 150
calls on 2 cores (``bench/capacity.py``) the loop was runnable for nearly all of every second
but ran for only 0.46-0.58 s of it, waiting the rest on the run queue; the transmit threads
then found nothing written and sent silence (1 800-150 000 lost frames a run). With the loop
at niceness -10 it waited 0.14-0.28 s, and the losses were 535-5 900 frames, about half of
them the benchmark's own stream server running late on the same cores.

(PJSIP paces with its own media clock thread, at most 4 calls a process: there the engine
leaves the loop at 0, as loops ahead of that clock made its RTP later.)

Telephony servers do the same for their media threads (Asterisk's ``-p``, FreeSWITCH's
``-hp``). The niceness is the loop thread's alone: it is set with the scheduler's
reset-on-fork flag, so every thread started from the loop afterwards (executors, the local
backend's models, the SIP stack's own) begins at niceness 0 again. A negative niceness needs
``CAP_SYS_NICE`` or an ``RLIMIT_NICE`` that allows it (systemd ``LimitNICE=``, Docker
``--ulimit nice=``); without either the loop keeps niceness 0 and the agent says why once.
"""

from __future__ import annotations

import errno
import os
import threading


def raise_loop_priority(nice: int) -> str | None:
    """Run the calling thread (the event loop's) at niceness ``nice`` (-20..0), the threads it
    starts later at 0; None when done (or ``nice`` is 0), else why it could not be."""
    if nice == 0:
        return None
    thread = threading.get_native_id()
    try:
        # First the flag, which any thread may set: a thread started later must not inherit
        # the loop's priority (it would compete with the loop on equal terms).
        os.sched_setscheduler(thread, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, thread, nice)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            return (
                f"niceness {nice} needs CAP_SYS_NICE or RLIMIT_NICE of at least {20 - nice} "
                "(systemd LimitNICE=, docker --ulimit nice=)"
            )
        return f"the scheduler refused niceness {nice}: {os.strerror(exc.errno or 0)}"
    return None
