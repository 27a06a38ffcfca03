"""What a response of the local server "cost", in the shape and proportions of the Realtime
API's ``response.usage``, so the agent's usage accounting runs end to end offline.

The API bills a response for its whole context as input (the instructions and every item so
far, text and audio, earlier output included) and for what it generated as output; what the
previous response already read comes back as cached input. The rates here are the API's
published orders of magnitude: input audio about one token per 100 ms, output audio one per
50 ms, text about four characters per token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.local.events import Item
from agent.realtime.dialect import Dialect

INPUT_AUDIO_TOKENS_PER_S = 10
OUTPUT_AUDIO_TOKENS_PER_S = 20
CHARS_PER_TOKEN = 4


def text_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN) if text else 0


def _item_text(item: Item) -> str:
    parts = [item.text or ""]
    for content in item.data.get("content") or []:
        if isinstance(content, dict):
            for key in ("text", "transcript"):
                value = content.get(key)
                if isinstance(value, str):
                    parts.append(value)
    if item.data.get("type") in ("function_call", "function_call_output"):
        parts += [str(item.data.get("arguments") or ""), str(item.data.get("output") or "")]
    return " ".join(part for part in parts if part)


def _item_audio_s(item: Item) -> float:
    if item.audio and item.audio_rate:
        return len(item.audio) / 2 / item.audio_rate
    return item.audio_ms / 1000


@dataclass
class UsageCounter:
    """One connection's responses: each one's usage, with the previous one's input cached."""

    dialect: Dialect
    _last_input: tuple[int, int] = (0, 0)

    def response_usage(
        self,
        instructions: str,
        context: Iterable[Item],
        output_text: str,
        output_audio_ms: float,
    ) -> dict[str, Any]:
        """The ``usage`` of a response that read ``context`` (the items before its own
        output) under ``instructions`` and produced ``output_text`` and that much audio."""
        items = list(context)
        in_text = text_tokens(instructions) + sum(text_tokens(_item_text(i)) for i in items)
        in_audio = round(sum(_item_audio_s(i) for i in items) * INPUT_AUDIO_TOKENS_PER_S)
        # What the previous response read is this one's cached prefix.
        cached_text = min(self._last_input[0], in_text)
        cached_audio = min(self._last_input[1], in_audio)
        self._last_input = (in_text, in_audio)
        out_text = text_tokens(output_text)
        out_audio = round(output_audio_ms / 1000 * OUTPUT_AUDIO_TOKENS_PER_S)
        input_details: dict[str, Any] = {
            "text_tokens": in_text,
            "audio_tokens": in_audio,
            "cached_tokens": cached_text + cached_audio,
        }
        if self.dialect is Dialect.GA:
            input_details["image_tokens"] = 0
            input_details["cached_tokens_details"] = {
                "text_tokens": cached_text,
                "audio_tokens": cached_audio,
                "image_tokens": 0,
            }
        inputs, outputs = in_text + in_audio, out_text + out_audio
        return {
            "total_tokens": inputs + outputs,
            "input_tokens": inputs,
            "output_tokens": outputs,
            "input_token_details": input_details,
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }
