"""One call's core without I/O: :class:`CallBridge` and the vocabulary it speaks.

``events`` (what the model's side says, parsed by a protocol adapter), ``requests`` (what the
bridge asks of it), ``actions`` (what the shell carries out), ``barge_in``, ``transcript`` and
``outcome`` (decisions the bridge drives). Importing this package pulls in no I/O module
(asyncio, socket, ssl, websockets, a SIP engine): a test asserts it.
"""

from agent.bridge.bridge import BridgeConfig, CallBridge, Step

__all__ = ["BridgeConfig", "CallBridge", "Step"]
