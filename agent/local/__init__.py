"""An embedded realtime server speaking the OpenAI realtime protocol (GA and beta dialects).

It lets the agent run with no cloud key and lets tests run end to end. Backends: the light
``synthetic`` one (a voice-like tone) and the offline ``voice`` one (Silero VAD, Whisper, a
scripted brain, Piper); see ``agent.local.backend``.

The modules, from the wire inwards:

- ``server``: the WebSocket edge; routes a connection to its dialect and paces the protocol.
- ``protocol``: ``RealtimeProtocol``, the sans-I/O session; its docstring is the contract.
- ``client_input``: client events parsed and checked (items, ``response.create``).
- ``session_state``: the session object in its dialect's shape, validated on update.
- ``input_audio``: the input audio buffer, its VAD timeline and the idle timeout.
- ``conversation``: the items, and their create/retrieve/delete/truncate.
- ``transcriptions``: speech-to-text of user turns, reported as each finishes.
- ``responses``: the response lifecycle, from created through streamed deltas to done.
- ``outbox``, ``events``: the queue of server events and their shapes in either dialect.
- ``replies``, ``responder``, ``reply_stream``, ``reply_source``, ``reply_encoder``: what a
  responder is asked and answers, its interface, the worker-thread hand-off, the protocol's
  non-blocking view of a reply, and its audio framed in the session's codec.
- ``vad``, ``silero_vad``: the energy and Silero speech detectors.
- ``backend``: the backends by name; ``synthetic_voice``: the synthetic one's voice.
- ``voice``, ``brain``, ``stt``, ``tts``, ``speech_text``, ``models``: the voice backend's
  responder and transcriber, its scripted brain, Whisper, Piper, the splitting of replies
  for speech, and the models and worker threads shared by every call.

This package imports nothing itself: import from its modules. A package that re-exports its
modules is in an import cycle with each of them (importing ``agent.local.x`` runs this file
first), which ``tests/test_local_imports.py`` forbids.
"""
