"""GPT-Live's primary WebSocket, served by the local server (``/v1/live/sessions``).

A Live session is full duplex and server-owned: the client streams the caller's audio in and
plays what comes out; the server decides when the caller's turn ends, when to speak, when
the caller barged in, and hands tasks to the client as delegations. The modules, from the
wire inwards:

- ``protocol``: ``LiveProtocol``, the sans-I/O session; its docstring is the contract.
- ``commands``: client events parsed and checked as strictly as the real server does.
- ``session_config``: ``session.start`` validated and resolved; ``session.update``.
- ``caller_input``: the appended audio decoded, muted, and cut into turns by the VAD.
- ``caller_transcript``: the caller's words, transcribed while they speak.
- ``speaker``: what the agent says, paced out, cut short when the caller barges in.
- ``events``: the server events' shapes and the queue they leave by.

Like ``agent.local``, this package imports nothing itself: import from its modules.
"""
