"""The registry of transports: the endpoint says which one opens its session.

WebRTC is imported only when used: aiortc and PyAV take a while to import, and a WebSocket
agent never needs them.
"""

from __future__ import annotations

from agent.realtime.connection import RealtimeConnection
from agent.realtime.endpoint import RealtimeEndpoint
from agent.realtime.transport import RealtimeTransport


async def open_transport(endpoint: RealtimeEndpoint, timeout_s: float) -> RealtimeTransport:
    """Open ``endpoint``'s session over its transport; raises ``RealtimeConnectError``."""
    if endpoint.sdp is not None:
        from agent.realtime.webrtc.connection import WebRtcConnection

        return await WebRtcConnection.open(endpoint, timeout_s)
    return await RealtimeConnection.open(endpoint, timeout_s)
