"""``voice-agent check``: validate the configuration, then open and close one session.

It prints provider, URL (never a key), dialect and the outcome, one line each, so a wrong
deployment name or api-version shows up before the first phone call does.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TextIO

from agent.bridge.events import ServerError, SessionReady
from agent.config import Settings
from agent.realtime.adapter import MalformedEvent, RealtimeAdapter
from agent.realtime.connection import RealtimeConnectError, RealtimeConnection
from agent.realtime.endpoint import choose_provider, configuration_warnings, resolve_endpoint
from agent.realtime.session_config import session_update


async def _open_session(settings: Settings, local_url: str | None, out: TextIO) -> bool:
    endpoint = resolve_endpoint(settings, local_url)
    print(f"provider: {endpoint.provider}", file=out)
    print(f"url:      {endpoint.url}", file=out)
    print(f"dialect:  {endpoint.dialect.value}", file=out)
    for warning in configuration_warnings(settings, endpoint):
        print(f"warning:  {warning}", file=out)
    timeout = settings.realtime.connect_timeout_s
    started = time.monotonic()
    try:
        conn = await RealtimeConnection.open(endpoint, timeout)
    except RealtimeConnectError as exc:
        print(f"result:   FAILED: {exc}", file=out)
        return False
    adapter = RealtimeAdapter(endpoint.dialect)
    try:
        await conn.send(json.dumps(session_update(settings.agent, endpoint.dialect)))
        outcome = await asyncio.wait_for(_session_outcome(conn, adapter), timeout)
    except TimeoutError:
        outcome = f"FAILED: no session.updated within {timeout:g} s"
    finally:
        await conn.close()
    elapsed_ms = (time.monotonic() - started) * 1000
    print(f"result:   {outcome} ({elapsed_ms:.0f} ms)", file=out)
    return outcome.startswith("ok")


async def _session_outcome(conn: RealtimeConnection, adapter: RealtimeAdapter) -> str:
    async for message in conn.messages():
        try:
            event = adapter.parse(message)
        except MalformedEvent as exc:
            return f"FAILED: malformed server event: {exc}"
        if isinstance(event, SessionReady):
            return "ok: session created and updated"
        if isinstance(event, ServerError):
            return f"FAILED: server rejected session.update: {event.code}: {event.message}"
    return f"FAILED: connection closed: {conn.close_reason}"


async def run_check(settings: Settings, out: TextIO) -> bool:
    """True when a session could be opened with ``settings``."""
    if choose_provider(settings) != "local":
        return await _open_session(settings, None, out)
    from agent.local.server import LocalRealtimeServer

    async with LocalRealtimeServer() as server:
        return await _open_session(settings, server.url, out)
