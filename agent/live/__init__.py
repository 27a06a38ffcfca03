"""GPT-Live: OpenAI's second voice API, behind the same CallBridge as the Realtime API.

``adapter`` speaks its primary WebSocket (``session.start``, audio appends, transcripts,
delegations), ``session_start`` builds the immutable session it starts with, and
``delegation`` does the work the voice model delegates (its tools) over Responses WebSocket
mode.
"""
