"""The outbound-call control API on the agent's ``[http]`` listener (``[outbound] api``).

``POST /v1/calls`` places a call, ``GET /v1/calls`` and ``GET /v1/calls/{id}`` report them
(state, outcome, timings, transcript so far), ``POST /v1/calls/{id}/hangup`` ends one. Every
request needs ``Authorization: Bearer <token>`` (compared in constant time; 401 otherwise).
Errors are JSON ``{"error": {"code", "message", "field"?, "rule"?}}``: 400 names the field,
403 is a policy refusal (its rule), 404 an unknown call, 409 a hang-up of an ended call, 413
a body over ``MAX_REQUEST_BYTES``, 429 a cap (concurrent calls, calls per destination per
day), 502 an INVITE the stack could not send, 503 the agent shutting down.

aiohttp serves it because it already is the listener (health, metrics): its server runs on
the asyncio loop that carries the calls, so a handler reads the calls' state directly and
places a call with no thread or lock in between.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from aiohttp import web

from agent.outbound.dialer import (
    LEDGER_UNAVAILABLE,
    CallRequest,
    DialFailed,
    NotAccepting,
    OutboundCalls,
    Refused,
    RequestError,
)
from agent.outbound.session import ENDED

#: The largest request body read (a call request is a few hundred bytes).
MAX_REQUEST_BYTES = 16 * 1024
_FIELDS = {"to", "profile", "account", "from", "variables", "ring_timeout_s"}


def _error(status: int, code: str, message: str, **extra: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)


def _string(body: dict[str, Any], name: str, required: bool = False) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise RequestError(name, f"{name}: a string is required")
    return value


def call_request(body: Any) -> CallRequest:
    """``POST /v1/calls``' JSON as a request; raises ``RequestError`` naming the field."""
    if not isinstance(body, dict):
        raise RequestError("body", "the body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise RequestError(unknown[0], f"unknown field {unknown[0][:40]!r}")
    variables = body.get("variables") or {}
    if not isinstance(variables, dict) or not all(
        isinstance(value, str) for value in variables.values()
    ):
        raise RequestError("variables", "variables: an object of strings is required")
    ring = body.get("ring_timeout_s")
    if ring is not None and (isinstance(ring, bool) or not isinstance(ring, int | float)):
        raise RequestError("ring_timeout_s", "ring_timeout_s: a number is required")
    return CallRequest(
        to=_string(body, "to", required=True),
        profile=_string(body, "profile"),
        account=_string(body, "account"),
        from_number=_string(body, "from"),
        variables={str(k): v for k, v in variables.items()},
        ring_timeout_s=float(ring) if ring is not None else None,
    )


def call_routes(calls: OutboundCalls, token: str) -> list[web.RouteDef]:
    """The API's routes, each behind the bearer token ``token`` (never empty)."""
    assert token, "the API needs a token"
    # Digests compared, not the headers: equal lengths, so not even the token's length shows
    # in the time a refusal takes.
    expected = hashlib.sha256(f"Bearer {token}".encode()).digest()

    def authorized(request: web.Request) -> bool:
        given = request.headers.get("Authorization", "").encode("utf-8", "replace")
        return hmac.compare_digest(hashlib.sha256(given).digest(), expected)

    def guarded(handler: Any) -> Any:
        async def run(request: web.Request) -> web.StreamResponse:
            if not authorized(request):
                return _error(401, "unauthorized", "a valid Authorization: Bearer token is needed")
            result: web.StreamResponse = await handler(request)
            return result

        return run

    async def create(request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=json.loads)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "too_large", f"the body is over {MAX_REQUEST_BYTES} bytes")
        except ValueError:
            return _error(400, "invalid_json", "the body is not JSON", field="body")
        try:
            session = await calls.place(call_request(body))
        except RequestError as exc:
            return _error(400, "invalid_request", str(exc), field=exc.field)
        except Refused as exc:
            refusal = exc.refusal
            if refusal.rule == LEDGER_UNAVAILABLE:
                return _error(503, "unavailable", refusal.detail, rule=refusal.rule)
            status = 429 if refusal.is_cap else 403
            return _error(status, "refused", refusal.detail, rule=refusal.rule)
        except NotAccepting as exc:
            return _error(503, "unavailable", str(exc))
        except DialFailed as exc:
            return _error(502, "dial_failed", str(exc))
        return web.json_response({"call_id": session.call_id, "state": session.state}, status=201)

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"calls": [s.summary() for s in calls.calls.values()]})

    async def one(request: web.Request) -> web.Response:
        session = calls.get(request.match_info["call_id"])
        if session is None:
            return _error(404, "not_found", "no such call")
        return web.json_response(session.summary())

    async def hangup(request: web.Request) -> web.Response:
        session = calls.get(request.match_info["call_id"])
        if session is None:
            return _error(404, "not_found", "no such call")
        if session.state == ENDED or session.call.disconnected:
            return _error(409, "ended", "the call has already ended")
        session.hang_up("hung up through the API")
        return web.json_response({"call_id": session.call_id, "state": session.state}, status=202)

    return [
        web.post("/v1/calls", guarded(create)),
        web.get("/v1/calls", guarded(listing)),
        web.get("/v1/calls/{call_id}", guarded(one)),
        web.post("/v1/calls/{call_id}/hangup", guarded(hangup)),
    ]
