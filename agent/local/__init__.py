"""An embedded realtime server speaking the OpenAI realtime protocol (GA and beta dialects).

It lets the agent run with no cloud key and lets tests run end to end. Backends: the light
``synthetic`` one (a voice-like tone) and the offline ``voice`` one
(``agent.local.voice.voice_backend``: Silero VAD, Whisper, a scripted brain, Piper).
"""

from agent.local.backend import Backend, make_backend, synthetic_backend
from agent.local.reply_stream import ReplyPlan, ReplyStream
from agent.local.responder import (
    Reply,
    ReplyRequest,
    Responder,
    SyntheticResponder,
    ToolCall,
    ToolResult,
    Transcriber,
)
from agent.local.server import LocalRealtimeServer, LocalSession, run_local_server

__all__ = [
    "Backend",
    "LocalRealtimeServer",
    "LocalSession",
    "Reply",
    "ReplyPlan",
    "ReplyRequest",
    "ReplyStream",
    "Responder",
    "SyntheticResponder",
    "ToolCall",
    "ToolResult",
    "Transcriber",
    "make_backend",
    "run_local_server",
    "synthetic_backend",
]
