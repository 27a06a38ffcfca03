"""The WebRTC transport: an aiortc peer connection per session, audio on its media tracks and
the protocol's events on the ``oai-events`` data channel. Shared with the local server's
WebRTC side (``agent.local.webrtc``), which uses the same media and ICE helpers."""
