"""The ``session.start`` a GPT-Live call opens with, built from a :class:`SessionSpec`.

Everything in it is fixed for the session's life (model, instructions, audio format, voice,
startup history): a GPT-Live session cannot change its format the way a Realtime one can, so
the call sends it once the SIP codec is known. The voice model has no tools of its own: it
delegates work to us (client delegation), and its instructions say which work there is.
"""

from __future__ import annotations

from typing import Any, Final

from agent.bridge.requests import SessionSpec, Turn

#: Session codec -> GPT-Live audio format (one format for both directions).
AUDIO_FORMATS: Final[dict[str, dict[str, Any]]] = {
    "pcmu": {"type": "audio/pcmu", "rate": 8000},
    "pcma": {"type": "audio/pcma", "rate": 8000},
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "pcm16-16k": {"type": "audio/pcm", "rate": 16000},
}

#: GPT-Live takes at most this many startup history messages.
MAX_INPUT_MESSAGES: Final = 128

_DELEGATION_HINT = (
    "You have no tools yourself. When the caller needs one of these done, delegate it, say a "
    "few words while it runs, and tell the caller the result when it comes back:"
)


def codec_of(audio_format: object) -> str | None:
    """The session codec of a GPT-Live audio format, or None when it is none of ours."""
    for codec, known in AUDIO_FORMATS.items():
        if audio_format == known:
            return codec
    return None


def delegation_hint(tools: list[dict[str, Any]]) -> str:
    """What the voice model is told about the work it can delegate (our function tools)."""
    lines = [_DELEGATION_HINT]
    for tool in tools:
        name = str(tool.get("name", ""))
        about = str(tool.get("description", "")).strip().splitlines()
        lines.append(f"- {name}: {about[0]}" if about else f"- {name}")
    return "\n".join(lines)


def history_input(turns: tuple[Turn, ...]) -> list[dict[str, Any]]:
    """The startup ``input`` carrying a conversation over (the latest 128 lines)."""
    messages = []
    for turn in turns[-MAX_INPUT_MESSAGES:]:
        kind = "input_text" if turn.role == "user" else "output_text"
        messages.append(
            {
                "type": "message",
                "role": turn.role,
                "content": [{"type": kind, "text": turn.text}],
            }
        )
    return messages


def session_body(spec: SessionSpec, media: bool = False) -> dict[str, Any]:
    """The ``session`` object of ``session.start`` for ``spec``; ``media``: of the request
    that creates a WebRTC session instead, which names no audio format (the media
    negotiates it)."""
    instructions = spec.instructions.strip()
    if spec.tools:
        instructions = f"{instructions}\n\n{delegation_hint(spec.tools)}".strip()
    delegation: dict[str, Any] = {"type": "client"}
    if spec.acknowledgement_delay_ms:
        delegation["acknowledgement_delay_ms"] = spec.acknowledgement_delay_ms
    session: dict[str, Any] = {
        "model": spec.model,
        "instructions": instructions,
        "audio": {"output": {"voice": spec.voice}}
        if media
        else {"format": AUDIO_FORMATS[spec.codec], "output": {"voice": spec.voice}},
        "delegation": delegation,
    }
    if spec.history:
        session["input"] = history_input(spec.history)
    return session
