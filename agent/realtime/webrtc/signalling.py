"""The SDP exchange that opens a WebRTC session: our offer out over HTTP, the answer back.

Failures are one line each, naming the URL but never a key: an HTTP status of the exchange
(with what it usually means), no answer in time, no connection, or a reply that is no SDP.

GPT-Live's exchange is JSON both ways: the session's configuration and the offer go in
(``{"session": ..., "transport": {"type": "webrtc", "sdp": offer}}``), the session's id and
the answer come back (``{"session": {"id"}, "transport": {"type": "webrtc", "sdp"}}``).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from agent.realtime.connection import RealtimeConnectError
from agent.realtime.endpoint import SdpExchange

_STATUS_HINTS = {
    400: "the offer or the session was refused",
    401: "authentication failed: the API key was rejected",
    403: "forbidden: the key has no access to this model or deployment",
    404: "not found: check the deployment name and URL path",
    429: "rate limited or out of quota",
}
#: The server's reason, when it gives one, is cut to this much in the one line we log.
_REASON_CHARS = 160


async def exchange_sdp(
    offer: str,
    sdp: SdpExchange,
    headers: dict[str, str],
    timeout_s: float,
    where: str,
    session: dict[str, Any] | None = None,
) -> str:
    """POST ``offer`` as ``sdp`` says; the server's SDP answer. ``session`` is the
    configuration a GPT-Live exchange carries (required there, unused elsewhere)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            if sdp.live:
                if session is None:
                    raise ValueError("a GPT-Live SDP exchange carries the session's configuration")
                answer = await _live_exchange(http, sdp.url, headers, offer, session, where)
            elif sdp.client_secret_url:
                key = await _client_secret(http, sdp, headers, where)
                auth = {"Authorization": f"Bearer {key}"}
                answer = await _post(http, sdp.url, auth, _raw(offer), where)
            elif sdp.model:
                answer = await _post(http, sdp.url, headers, _multipart(offer, sdp.model), where)
            else:
                answer = await _post(http, sdp.url, headers, _raw(offer), where)
    except TimeoutError:
        raise RealtimeConnectError(f"{where}: SDP exchange timed out") from None
    except aiohttp.ClientConnectorError as exc:
        raise RealtimeConnectError(f"{where}: cannot connect: {exc.os_error}") from None
    except aiohttp.ClientError as exc:
        raise RealtimeConnectError(f"{where}: SDP exchange failed: {exc}") from None
    if not answer.startswith("v=0"):
        raise RealtimeConnectError(f"{where}: the SDP exchange answered with no SDP")
    return answer


async def _live_exchange(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    offer: str,
    session: dict[str, Any],
    where: str,
) -> str:
    body = {"session": session, "transport": {"type": "webrtc", "sdp": offer}}
    async with http.post(url, json=body, headers={**headers, "Accept": "application/json"}) as r:
        text = await r.text()
        if r.status >= 300:
            raise _status_error(r.status, text, where)
    try:
        answer = json.loads(text)["transport"]["sdp"]
    except (ValueError, KeyError, TypeError):
        answer = None
    if not isinstance(answer, str):
        raise RealtimeConnectError(f"{where}: the session reply has no transport.sdp answer")
    return answer


def _raw(offer: str) -> aiohttp.payload.Payload:
    return aiohttp.payload.StringPayload(offer, content_type="application/sdp")


def _multipart(offer: str, model: str) -> aiohttp.MultipartWriter:
    """OpenAI's unified interface: the offer and the session (type and model; the rest of
    the configuration follows as ``session.update`` on the data channel, as on WebSocket)."""
    form = aiohttp.MultipartWriter("form-data")
    part = form.append(offer, {"Content-Type": "application/sdp"})
    part.set_content_disposition("form-data", name="sdp")
    session = json.dumps({"type": "realtime", "model": model})
    part = form.append(session, {"Content-Type": "application/json"})
    part.set_content_disposition("form-data", name="session")
    return form


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: aiohttp.payload.Payload | aiohttp.MultipartWriter,
    where: str,
) -> str:
    async with http.post(url, data=body, headers={**headers, "Accept": "application/sdp"}) as r:
        text = await r.text()
        if r.status >= 300:
            raise _status_error(r.status, text, where)
        return text


async def _client_secret(
    http: aiohttp.ClientSession, sdp: SdpExchange, headers: dict[str, str], where: str
) -> str:
    body = {"session": {"type": "realtime", "model": sdp.model}}
    async with http.post(sdp.client_secret_url, json=body, headers=headers) as r:
        text = await r.text()
        if r.status >= 300:
            raise _status_error(r.status, text, f"{where} (client secret)")
    try:
        value = json.loads(text)["value"]
    except (ValueError, KeyError, TypeError):
        raise RealtimeConnectError(f"{where}: the client secret reply has no value") from None
    if not isinstance(value, str):
        raise RealtimeConnectError(f"{where}: the client secret reply has no value")
    return value


def _status_error(status: int, text: str, where: str) -> RealtimeConnectError:
    hint = _STATUS_HINTS.get(status, "unexpected HTTP status")
    reason = " ".join(_error_message(text).split())[:_REASON_CHARS]
    detail = f" ({reason})" if reason else ""
    return RealtimeConnectError(f"{where}: SDP exchange: HTTP {status} {hint}{detail}", status)


def _error_message(text: str) -> str:
    """The ``error.message`` of an API error body (what the reason is), else the body."""
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return text
    return message if isinstance(message, str) else text
