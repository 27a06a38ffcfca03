"""The Responses API's WebSocket mode, served by the local server (``/v1/responses``).

A GPT-Live session with client delegation hands its tasks to the client, which asks a
backend model what to do over Responses WebSocket mode: ``response.create`` events in,
streamed response events out. Locally the backend model is the voice backend's brain (the
synthetic backend answers every request with a short fixed message). The modules:

- ``protocol``: ``ResponsesProtocol``, the sans-I/O connection; its docstring is the contract.
- ``requests``: a ``response.create`` checked (leniently) and its input items read.
- ``answers``: what the brain answers a request with: a message or a function call.
- ``stream``: a response's events, from ``response.created`` to ``response.completed``.

Like ``agent.local``, this package imports nothing itself: import from its modules.
"""
