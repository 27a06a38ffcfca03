"""The pre-call lookup: an HTTP POST while the call rings, whose answer may choose the call's
profile and give it variables.

The request is ``{"type": "call.lookup", "call_id", "sip_call_id", "caller", "dialed",
"remote_uri", "local_uri"}``, signed like the webhook. The answer is a JSON object with any
of ``"profile"`` (the name of a ``[profiles.<name>]`` table: the receiver can only choose
among what the operator configured, never send instructions of its own) and
``"variables"`` (names to strings, for ``{name}`` placeholders). 204 means "nothing to
change". Anything else that is wrong (a timeout, a refused connection, a non-2xx status,
bad JSON, an unknown profile, a bad variable) makes the whole answer void: the call goes on
with ``[agent]`` and no variables, and the caller never waits longer than the timeout.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2

from agent.config import WebhookSettings
from agent.webhook.signing import SIGNATURE_HEADER, signature_header

LOOKUP = "call.lookup"
#: Limits on what an answer may carry into a call's prompt.
MAX_VARIABLES = 50
MAX_VALUE_CHARS = 2000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class LookupFailed(Exception):
    """The lookup gave no usable answer; the message says why, in a few words."""


@dataclass(frozen=True)
class LookupResult:
    """What the lookup chose: ``profile`` "" is [agent]."""

    profile: str = ""
    variables: dict[str, str] = field(default_factory=dict)


def parse_answer(data: bytes, profiles: Collection[str]) -> LookupResult:
    """The answer's choice; raises LookupFailed when any of it is unusable."""
    try:
        answer = json.loads(data)
    except ValueError:
        raise LookupFailed("the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise LookupFailed("the answer is not a JSON object")
    profile = answer.get("profile")
    if profile is None:
        profile = ""
    if not isinstance(profile, str):
        raise LookupFailed("profile is not a string")
    if profile and profile not in profiles:
        # Only the operator's own profiles: a lookup service cannot make one up.
        raise LookupFailed(f"profile {profile[:64]!r} is not configured")
    raw = answer.get("variables")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise LookupFailed("variables is not a JSON object")
    if len(raw) > MAX_VARIABLES:
        raise LookupFailed(f"more than {MAX_VARIABLES} variables")
    variables: dict[str, str] = {}
    for name, value in raw.items():
        if not _NAME.fullmatch(name):
            raise LookupFailed(f"variable name {name[:64]!r} is not a simple name")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise LookupFailed(f"variable {name} is not a string or a number")
        text = str(value)
        if len(text) > MAX_VALUE_CHARS:
            raise LookupFailed(f"variable {name} is longer than {MAX_VALUE_CHARS} characters")
        variables[name] = text
    return LookupResult(profile, variables)


class CallLookup:
    """Asks ``settings.lookup_url`` about each call; one HTTP client for all of them."""

    def __init__(self, settings: WebhookSettings, secret: str, profiles: Collection[str]) -> None:
        self.settings = settings
        self.profiles = frozenset(profiles)
        self._secret = secret
        self._client = httpx2.AsyncClient(follow_redirects=False)

    @property
    def timeout_s(self) -> float:
        return self.settings.lookup_timeout_ms / 1000

    async def ask(self, request: Mapping[str, Any]) -> LookupResult:
        """The choice for the call ``request`` describes; raises LookupFailed."""
        body = json.dumps({"type": LOOKUP, **request}, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "voice-agent",
            SIGNATURE_HEADER: signature_header(self._secret, body),
        }
        try:
            # The one deadline for all of it: connecting, sending, the answer and its body.
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.post(
                    self.settings.lookup_url, content=body, headers=headers, timeout=self.timeout_s
                )
        except (TimeoutError, httpx2.TimeoutException):
            raise LookupFailed(f"no answer within {self.settings.lookup_timeout_ms} ms") from None
        except (httpx2.HTTPError, OSError) as exc:
            raise LookupFailed(f"request failed: {type(exc).__name__}") from None
        if response.status_code == 204:
            return LookupResult()
        if not 200 <= response.status_code < 300:
            raise LookupFailed(f"HTTP {response.status_code}")
        return parse_answer(response.content, self.profiles)

    async def close(self) -> None:
        await self._client.aclose()
