"""An embedded realtime server speaking the OpenAI realtime protocol (GA and beta dialects).

It lets the agent run with no cloud key and lets tests run end to end. Backends: the light
``synthetic`` one (a voice-like tone) and the offline ``voice`` one (Silero VAD, Whisper, a
scripted brain, Piper); see ``agent.local.backend``.

This package imports nothing itself: import from its modules (``agent.local.server`` for the
server). A package that re-exports its modules puts itself in an import cycle with each of
them (importing ``agent.local.x`` runs this file first), which ``tests/test_local_imports.py``
forbids.
"""
