"""structlog set-up: JSON lines in production, a readable console otherwise.

Secrets must never reach a log line. Two guards: values under secret-looking keys are
masked, and every registered secret value (API keys loaded from config) is scrubbed from any
string field, so a key embedded in a URL or an exception message is caught too.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|password|authorization|auth)", re.I)
_MASK = "***"
#: A usage count ("input_tokens": 120) is named like a secret but is none.
_COUNT_KEY = re.compile(r"_tokens$")
_registered_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is scrubbed from every later log line."""
    if value and len(value) >= 6:
        _registered_secrets.add(value)


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by a mask."""
    for secret in _registered_secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def _secret(key: str, value: Any) -> bool:
    """Whether the field ``key`` holds a secret (counts of tokens used do not)."""
    if not _SECRET_KEY.search(key):
        return False
    is_count = isinstance(value, int | float) and not isinstance(value, bool)
    return not (is_count and _COUNT_KEY.search(key))


def redact(value: Any) -> Any:
    """``value`` with secret-named fields masked and registered secrets scrubbed, at any depth."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: (_MASK if _secret(str(k), v) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named fields and scrub registered secret values."""
    for key in list(event_dict):
        if _secret(key, event_dict[key]):
            event_dict[key] = _MASK
        else:
            event_dict[key] = redact(event_dict[key])
    return event_dict


def configure_logging(fmt: str = "console", level: str = "info", stream: Any = None) -> None:
    """Configure structlog for the process; ``fmt`` is "console" or "json"."""
    out = stream if stream is not None else sys.stderr
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty() if hasattr(out, "isatty") else False
        )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **bound: Any) -> structlog.stdlib.BoundLogger:
    """A logger with ``bound`` key/values on every line (e.g. ``call_id``)."""
    log: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return log.bind(**bound) if bound else log
