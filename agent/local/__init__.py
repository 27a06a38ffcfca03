"""An embedded realtime server speaking the OpenAI realtime protocol (GA and beta dialects).

It lets the agent run with no cloud key and lets tests run end to end.
"""

from agent.local.responder import Reply, ReplyRequest, Responder, SyntheticResponder
from agent.local.server import LocalRealtimeServer, LocalSession, run_local_server

__all__ = [
    "LocalRealtimeServer",
    "LocalSession",
    "Reply",
    "ReplyRequest",
    "Responder",
    "SyntheticResponder",
    "run_local_server",
]
