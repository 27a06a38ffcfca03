"""The local server's WebRTC side: the Realtime API's calls endpoint answered with aiortc, so
an agent configured for WebRTC runs offline and in CI like one on WebSocket.

``signalling`` serves the SDP exchange over HTTP and makes one peer connection per session;
``channel`` lets the WebSocket transport's ``LocalSession`` run on the data channel as it
runs on a socket; ``tracked`` puts the protocol's audio on the media track and the track's
audio into the protocol, with the server-side playout events WebRTC clients expect.
"""
