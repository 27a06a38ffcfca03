"""The local backend's "brain": a rule-based IVR script instead of a language model.

A script (``config/local_brain.toml`` by default) lists intents: keywords or regular
expressions that pick a reply, optionally with a function call (``transfer_call``,
``end_call``, ...) made after the reply is spoken. Anything no intent matches gets the echo
fallback ("You said: ..."), so every utterance is answered. The brain is pure: text in,
decision out; hearing and speaking are somebody else's job.

Matching works on the transcript lower-cased with punctuation removed (speech-to-text
punctuates at whim). Intents are tried in file order and the first that matches wins.
Replies may use ``{utterance}`` and the named groups of the intent's patterns.
"""

from __future__ import annotations

import json
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import ConfigError
from agent.local.replies import ToolCall, ToolResult

DEFAULT_BRAIN_PATH = Path(__file__).resolve().parent.parent.parent / "config" / "local_brain.toml"

_SCRIPT_TEXTS = ("greeting", "fallback", "not_heard", "idle", "tool_done", "tool_failed")
_INTENT_KEYS = {
    "name", "keywords", "patterns", "reply", "tool", "arguments", "after_tool", "unavailable",
}  # fmt: skip
#: The functions a session offers: name -> JSON schema of its arguments.
Tools = Mapping[str, Mapping[str, Any]]
_FAILURE_WORDS = ("error", "failed", "failure")


@dataclass(frozen=True)
class Intent:
    """One scripted answer and what triggers it."""

    name: str
    reply: str
    keywords: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    tool: str | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)
    after_tool: str | None = None
    #: Said instead of ``reply`` when the session does not offer ``tool``.
    unavailable: str | None = None

    def match(self, normalized: str) -> dict[str, str] | None:
        """The template fields if this intent matches ``normalized`` text, else None.

        Patterns go first: they are the more specific, and they fill the named groups.
        """
        for pattern in self.patterns:
            found = pattern.search(normalized)
            if found is not None:
                return {k: v for k, v in found.groupdict().items() if v is not None}
        padded = f" {normalized} "
        if any(f" {keyword} " in padded for keyword in self.keywords):
            return {}
        return None


@dataclass(frozen=True)
class Script:
    """Everything the brain says: fixed lines and the intents."""

    greeting: str
    fallback: str
    not_heard: str
    idle: str
    tool_done: str
    tool_failed: str
    intents: tuple[Intent, ...]


@dataclass(frozen=True)
class Decision:
    """What to say, the function to call after saying it, and why (the intent's name)."""

    text: str
    tool_call: ToolCall | None
    intent: str


class Brain:
    """Decides each reply from the script."""

    def __init__(self, script: Script) -> None:
        self.script = script

    def tool_names(self) -> tuple[str, ...]:
        """Every function the script's intents call, in file order, each once."""
        return tuple(dict.fromkeys(i.tool for i in self.script.intents if i.tool is not None))

    def greet(self) -> Decision:
        return Decision(self.script.greeting, None, "greeting")

    def prompt_idle(self) -> Decision:
        return Decision(self.script.idle, None, "idle")

    def answer(self, utterance: str, tools: Tools) -> Decision:
        """The reply to what the caller said; a function is called only if offered.

        Arguments the intent leaves out, or gives a value the function does not take, are
        chosen from the function's own schema where it lists the allowed values (``enum``):
        the one the caller named, else the first. So the transfer intent asks for one of the
        profile's real destinations, whatever they are called.
        """
        normalized = normalize(utterance)
        if not normalized:
            return Decision(self.script.not_heard, None, "not_heard")
        shown = utterance.strip().rstrip(".!?")
        for intent in self.script.intents:
            groups = intent.match(normalized)
            if groups is None:
                continue
            fields = _Fields({**groups, "utterance": shown})
            if intent.tool is not None and intent.tool not in tools:
                if intent.unavailable:
                    return Decision(intent.unavailable, None, f"{intent.name}:unavailable")
                return Decision(intent.reply.format_map(fields), None, intent.name)
            call = None
            if intent.tool is not None:
                arguments = _fill_arguments(intent.arguments, fields)
                arguments = _choose_allowed(arguments, tools[intent.tool], normalized)
                call = ToolCall(intent.tool, json.dumps(arguments))
            return Decision(intent.reply.format_map(fields), call, intent.name)
        return Decision(self.script.fallback.format_map({"utterance": shown}), None, "fallback")

    def after_tool(self, result: ToolResult) -> Decision:
        """What to say once the client reports a function call's outcome."""
        if _failed(result.output):
            return Decision(self.script.tool_failed, None, "tool_failed")
        intent = next((i for i in self.script.intents if i.tool == result.name), None)
        if intent is not None and intent.after_tool:
            return Decision(intent.after_tool, None, f"{intent.name}:after_tool")
        return Decision(self.script.tool_done, None, "tool_done")


class _Fields(dict[str, str]):
    """Template values; a named group that did not take part in the match is empty."""

    def __missing__(self, key: str) -> str:
        return ""


def normalize(text: str) -> str:
    """Lower-case words and digits only, single-spaced (what keywords are matched against)."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def load_brain(path: Path | None = None) -> Brain:
    """The brain of the script at ``path`` (default ``config/local_brain.toml``).

    A bad script raises ``ConfigError`` naming the file and the problem.
    """
    source = path or DEFAULT_BRAIN_PATH
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"local brain script not found: {source}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    try:
        return Brain(parse_script(data))
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def parse_script(data: Mapping[str, Any]) -> Script:
    """A script from its TOML table; raises ValueError on anything missing or mistyped."""
    unknown = set(data) - {*_SCRIPT_TEXTS, "intent"}
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r}")
    texts = {key: _text(data, key, "script") for key in _SCRIPT_TEXTS}
    _check_fields(texts["fallback"], {"utterance"}, "fallback")
    for key in ("greeting", "not_heard", "idle", "tool_done", "tool_failed"):
        _check_fields(texts[key], set(), key)
    raw_intents = data.get("intent", [])
    if not isinstance(raw_intents, list):
        raise ValueError("'intent' must be an array of tables ([[intent]])")
    intents = tuple(_intent(raw, index) for index, raw in enumerate(raw_intents))
    return Script(**texts, intents=intents)


def _intent(raw: object, index: int) -> Intent:
    where = f"intent[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a table")
    unknown = set(raw) - _INTENT_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    name = _text(raw, "name", where)
    where = f"intent {name!r}"
    keywords = tuple(normalize(k) for k in _strings(raw, "keywords", where))
    try:
        patterns = tuple(re.compile(p) for p in _strings(raw, "patterns", where))
    except re.error as exc:
        raise ValueError(f"{where}: bad pattern: {exc}") from None
    if not any(keywords) and not patterns:
        raise ValueError(f"{where}: needs keywords or patterns")
    fields = {"utterance"} | {group for p in patterns for group in p.groupindex}
    reply = _text(raw, "reply", where)
    _check_fields(reply, fields, f"{where}.reply")
    tool = raw.get("tool")
    if tool is not None and (not isinstance(tool, str) or not tool):
        raise ValueError(f"{where}: 'tool' must be a function name")
    arguments = raw.get("arguments", {})
    if not isinstance(arguments, dict):
        raise ValueError(f"{where}: 'arguments' must be a table")
    if arguments and tool is None:
        raise ValueError(f"{where}: 'arguments' without a 'tool'")
    _check_argument_fields(arguments, fields, f"{where}.arguments")
    after_tool = raw.get("after_tool")
    if after_tool is not None:
        after_tool = _text(raw, "after_tool", where)
        _check_fields(after_tool, set(), f"{where}.after_tool")
    unavailable = raw.get("unavailable")
    if unavailable is not None:
        if tool is None:
            raise ValueError(f"{where}: 'unavailable' without a 'tool'")
        unavailable = _text(raw, "unavailable", where)
        _check_fields(unavailable, set(), f"{where}.unavailable")
    return Intent(
        name=name,
        reply=reply,
        keywords=tuple(k for k in keywords if k),
        patterns=patterns,
        tool=tool,
        arguments=arguments,
        after_tool=after_tool,
        unavailable=unavailable,
    )


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key!r} must be a non-empty string")
    return value


def _strings(data: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: {key!r} must be a list of strings")
    return value


def _check_fields(template: str, allowed: set[str], where: str) -> None:
    """Reject ``{name}`` placeholders that would have no value when the line is spoken."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    unknown = names - allowed
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"{where}: unknown placeholder {{{sorted(unknown)[0]}}} (known: {known})")


def _check_argument_fields(value: object, allowed: set[str], where: str) -> None:
    if isinstance(value, str):
        _check_fields(value, allowed, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_argument_fields(item, allowed, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_argument_fields(item, allowed, f"{where}[{index}]")


def _fill_arguments(value: Any, fields: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return value.format_map(fields)
    if isinstance(value, dict):
        return {key: _fill_arguments(item, fields) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill_arguments(item, fields) for item in value]
    return value


def _choose_allowed(
    arguments: dict[str, Any], schema: Mapping[str, Any], normalized: str
) -> dict[str, Any]:
    """``arguments`` with every enum-constrained property set to a value the schema allows."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return arguments
    chosen = dict(arguments)
    for name, prop in properties.items():
        options = prop.get("enum") if isinstance(prop, Mapping) else None
        if not isinstance(options, list) or not options or chosen.get(name) in options:
            continue
        padded = f" {normalized} "
        named = [o for o in options if isinstance(o, str) and f" {normalize(o)} " in padded]
        chosen[name] = named[0] if named else options[0]
    return chosen


def _failed(output: str) -> bool:
    """Whether a function's output reports failure (``{"error": ...}``, ``{"ok": false}``)."""
    try:
        parsed = json.loads(output)
    except ValueError:
        return any(word in output.lower() for word in _FAILURE_WORDS)
    if not isinstance(parsed, dict):
        return False
    if parsed.get("error"):
        return True
    return any(parsed.get(key) is False for key in ("ok", "success"))
