"""``voice-agent check``: validate the configuration, then open and close one session.

It prints provider, URL (never a key), transport, protocol or dialect and the outcome, one
line each, over the configured transport (WebRTC: the SDP exchange, ICE, DTLS and the data
channel all have to work), so a wrong deployment name or api-version shows up before the
first phone call does; and first, one line per ``[[sip.accounts]]`` entry: registered, or
why not (``agent.check_accounts``). A GPT-Live session is started as a phone call's would be
(G.711 µ-law over WebSocket; over WebRTC by the SDP exchange itself) and closed gracefully.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TextIO

from agent.audio.codecs import TRACK_PCM16
from agent.bridge.adapter import MalformedEvent, ProtocolAdapter
from agent.bridge.events import ServerError, SessionReady
from agent.bridge.requests import CloseSession, ConfigureSession
from agent.call import protocol_adapter
from agent.check_accounts import check_accounts
from agent.config import Settings
from agent.realtime.connection import RealtimeConnectError
from agent.realtime.endpoint import (
    LIVE,
    choose_provider,
    configuration_warnings,
    resolve_endpoint,
)
from agent.realtime.session_config import session_spec
from agent.realtime.transport import RealtimeTransport
from agent.realtime.transports import open_transport


async def _open_session(
    settings: Settings, local_url: str | None, out: TextIO, local_calls_url: str | None = None
) -> bool:
    endpoint = resolve_endpoint(settings, local_url, local_calls_url)
    print(f"provider: {endpoint.provider}", file=out)
    print(f"url:      {endpoint.sdp.url if endpoint.sdp else endpoint.url}", file=out)
    print(f"transport: {endpoint.transport}", file=out)
    if endpoint.protocol == LIVE:
        print("protocol: GPT-Live", file=out)
    else:
        print(f"dialect:  {endpoint.dialect.value}", file=out)
    for warning in configuration_warnings(settings, endpoint):
        print(f"warning:  {warning}", file=out)
    timeout = settings.realtime.connect_timeout_s
    started = time.monotonic()
    adapter = protocol_adapter(endpoint)
    live = endpoint.protocol == LIVE
    spec = session_spec(settings.agent, live=settings.live if live else None)
    if endpoint.sdp is not None:
        spec = dataclasses.replace(spec, codec=TRACK_PCM16.name)  # the SDP chose Opus
    elif live:
        spec = dataclasses.replace(spec, codec="pcmu")
    configure = ConfigureSession(spec)
    try:
        # GPT-Live over WebRTC: the SDP exchange carries the configuration and starts it.
        conn = await open_transport(endpoint, timeout, adapter.creation([configure]))
    except RealtimeConnectError as exc:
        print(f"result:   FAILED: {exc}", file=out)
        return False
    try:
        for text in adapter.encode(configure):
            await conn.send(text)
        outcome = await asyncio.wait_for(_session_outcome(conn, adapter), timeout)
        for text in adapter.encode(CloseSession()):
            await conn.send(text)
    except TimeoutError:
        outcome = "FAILED: the session was not configured within " + f"{timeout:g} s"
    finally:
        await conn.close()
    elapsed_ms = (time.monotonic() - started) * 1000
    print(f"result:   {outcome} ({elapsed_ms:.0f} ms)", file=out)
    return outcome.startswith("ok")


async def _session_outcome(conn: RealtimeTransport, adapter: ProtocolAdapter) -> str:
    async for message in conn.messages():
        try:
            events = adapter.parse(message)
        except MalformedEvent as exc:
            return f"FAILED: malformed server event: {exc}"
        for event in events:
            if isinstance(event, SessionReady):
                return "ok: session created and configured"
            if isinstance(event, ServerError):
                return f"FAILED: the server rejected the session: {event.code}: {event.message}"
    return f"FAILED: connection closed: {conn.close_reason}"


async def run_check(settings: Settings, out: TextIO) -> bool:
    """True when a session could be opened with ``settings`` and every ``[[sip.accounts]]``
    entry registered."""
    registered = await check_accounts(settings, out) if settings.sip.accounts else True
    if choose_provider(settings) != "local":
        return await _open_session(settings, None, out) and registered
    from agent.local.server import LocalRealtimeServer

    webrtc = settings.realtime.transport == "webrtc"
    async with LocalRealtimeServer(webrtc=webrtc) as server:
        return await _open_session(settings, server.url, out, server.calls_url) and registered
