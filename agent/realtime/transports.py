"""The registry of transports: the endpoint says which one opens its session.

WebRTC is imported only when used: aiortc and PyAV take a while to import, and a WebSocket
agent never needs them.
"""

from __future__ import annotations

from typing import Any

from agent.realtime.connection import RealtimeConnection
from agent.realtime.endpoint import RealtimeEndpoint
from agent.realtime.transport import RealtimeTransport


async def open_transport(
    endpoint: RealtimeEndpoint, timeout_s: float, creation: dict[str, Any] | None = None
) -> RealtimeTransport:
    """Open ``endpoint``'s session over its transport; raises ``RealtimeConnectError``.

    ``creation`` is the session configuration the transport's own set-up carries (GPT-Live
    over WebRTC: the SDP exchange creates and starts the session; see the protocol
    adapter's ``creation``); a WebSocket session is configured on the wire instead."""
    if endpoint.sdp is not None:
        from agent.realtime.webrtc.connection import WebRtcConnection

        return await WebRtcConnection.open(endpoint, timeout_s, creation)
    return await RealtimeConnection.open(endpoint, timeout_s)
