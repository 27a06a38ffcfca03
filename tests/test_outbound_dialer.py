"""The dialer's order of checks, with a stand-in engine that records what it was asked."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.config import OutboundSettings, RecordSettings, Settings
from agent.outbound.api import call_routes
from agent.outbound.dialer import CallRequest, OutboundCalls, Refused, RequestError


class _Dials:
    def __init__(self) -> None:
        self.dialled: list[tuple[str, str, str]] = []

    async def dial(self, uri: str, listener: Any, *, account: str = "", from_user: str = "") -> Any:
        self.dialled.append((uri, account, from_user))
        return object()


class _Session:
    def __init__(self) -> None:
        self.call_id = f"C{id(self)}"
        self.state = "dialing"
        self.finished = asyncio.Event()

    def on_progress(self, code: int, reason: str) -> None:
        pass

    async def run(self) -> None:
        await self.finished.wait()


async def _end_all(calls: OutboundCalls) -> None:
    for session in calls.calls.values():
        session.finished.set()
    await calls.wait_all(1.0)


def _calls(tmp_path: Path, room: bool = True, **outbound: Any) -> tuple[OutboundCalls, _Dials]:
    settings = dataclasses.replace(
        Settings(),
        records=RecordSettings(dir=str(tmp_path)),
        outbound=OutboundSettings(**{"allow": (r"sip:.*@pbx",), **outbound}),
    )
    engine = _Dials()
    calls = OutboundCalls(
        settings,
        engine,
        lambda call, facts, profile: _Session(),
        has_room=lambda: room,  # type: ignore[arg-type]
    )
    return calls, engine


async def test_refused_calls_never_reach_the_engine(tmp_path: Path) -> None:
    calls, engine = _calls(tmp_path, max_concurrent=1, max_per_destination_per_day=2)
    with pytest.raises(Refused) as refused:
        await calls.place(CallRequest("sip:bob@elsewhere"))
    assert refused.value.refusal.rule == "not_allowed"
    with pytest.raises(RequestError) as bad:
        await calls.place(CallRequest("+4930123", account="nope"))
    assert bad.value.field == "account"

    first = await calls.place(CallRequest("sip:bob@pbx", variables={"name": "Ada"}))
    with pytest.raises(Refused) as busy:
        await calls.place(CallRequest("sip:carol@pbx"))
    assert busy.value.refusal.rule == "max_concurrent"
    first.finished.set()  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    await calls.place(CallRequest("sip:bob@pbx"))
    for session in calls.calls.values():
        session.finished.set()
    await asyncio.sleep(0)
    with pytest.raises(Refused) as daily:
        await calls.place(CallRequest("sip:BOB@pbx"))
    assert daily.value.refusal.rule == "max_per_destination_per_day"
    assert engine.dialled == [("sip:bob@pbx", "", ""), ("sip:bob@pbx", "", "")]
    await _end_all(calls)


async def test_a_full_process_places_no_call(tmp_path: Path) -> None:
    calls, engine = _calls(tmp_path, room=False)
    with pytest.raises(Refused) as full:
        await calls.place(CallRequest("sip:bob@pbx"))
    assert full.value.refusal.rule == "at_capacity" and full.value.refusal.is_cap
    assert engine.dialled == []
    # Nothing was counted against the destination either.
    assert calls.ledger is not None and calls.ledger.placed("sip:bob@pbx", time.time()) == 0


async def test_the_api_answers_a_cap_with_429_and_a_refusal_with_403(tmp_path: Path) -> None:
    calls, engine = _calls(tmp_path, max_concurrent=1)
    app = web.Application()
    app.add_routes(call_routes(calls, "t" * 20))
    auth = {"Authorization": "Bearer " + "t" * 20}
    async with TestClient(TestServer(app)) as client:
        first = await client.post("/v1/calls", json={"to": "sip:bob@pbx"}, headers=auth)
        assert first.status == 201
        second = await client.post("/v1/calls", json={"to": "sip:carol@pbx"}, headers=auth)
        assert second.status == 429
        assert (await second.json())["error"]["rule"] == "max_concurrent"
        third = await client.post("/v1/calls", json={"to": "sip:eve@elsewhere"}, headers=auth)
        assert third.status == 403
        assert (await third.json())["error"]["rule"] == "not_allowed"
        # The token is the whole header: a prefix of it, or another scheme, is refused.
        for header in ("Bearer " + "t" * 19, "t" * 20, "Basic " + "t" * 20):
            refused = await client.get("/v1/calls", headers={"Authorization": header})
            assert refused.status == 401
    assert [uri for uri, _, _ in engine.dialled] == ["sip:bob@pbx"]
    await _end_all(calls)
