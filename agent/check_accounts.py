"""``voice-agent check`` for ``[[sip.accounts]]``: register each one once, print the outcome.

The SIP engine is started on free ports (a running agent keeps its own), every account
registers, and the check waits for each first outcome (a UDP registrar that never answers
takes SIP's 32 s transaction timeout to say so), prints one line per account, and shuts the
engine down, which unregisters what registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import TextIO

from agent.config import Settings
from agent.sip.callers import RegistrarSources
from agent.sip.engine import EngineStartError
from agent.sip.engines import create_engine
from agent.sip.registration import REGISTERED, Registrations
from agent.sip.request_policy import unavailable

#: Longest wait for every account's first outcome.
CHECK_TIMEOUT_S = 40.0


async def check_accounts(settings: Settings, out: TextIO) -> bool:
    """True when every account registered."""
    registrations = Registrations(settings, RegistrarSources())
    # Free ports: a running agent keeps its own (SIP, and TLS when it listens).
    sip = dataclasses.replace(
        settings.sip, port=0, tls=dataclasses.replace(settings.sip.tls, port=0)
    )
    engine = create_engine(
        sip,
        lambda call: call.reject(503, "Service Unavailable", sip.retry_after_s),
        lambda: unavailable(sip.retry_after_s, "checking registrations"),
        registrations=registrations,
    )
    try:
        await engine.start()
    except EngineStartError as exc:
        print(f"accounts: FAILED: {exc}", file=out)
        return False
    poller = asyncio.create_task(engine.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CHECK_TIMEOUT_S
        states = registrations.accounts.values()
        while not all(state.settled for state in states) and loop.time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        ok = True
        for name, state in registrations.accounts.items():
            where = f"account:  {name} ({state.settings.registrar})"
            if state.state == REGISTERED:
                print(f"{where}: registered, expires in {state.expires_s} s", file=out)
            else:
                ok = False
                detail = state.detail or f"no outcome within {CHECK_TIMEOUT_S:g} s"
                print(f"{where}: FAILED: {detail}", file=out)
        await engine.shutdown()
    return ok
