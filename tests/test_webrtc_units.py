"""The WebRTC pieces without a network: the bridge playing track audio between the server's
playout events, the adapter's WebRTC events both ways, the endpoints per provider, and the
failures of the SDP exchange told apart."""

from __future__ import annotations

import dataclasses
import json

import pytest

from agent.audio.pcm import SIP_RATE
from agent.bridge import BridgeConfig, CallBridge
from agent.bridge.actions import HangUp
from agent.bridge.events import (
    AgentItemStarted,
    PlayoutCleared,
    PlayoutStarted,
    PlayoutStopped,
    ResponseCreated,
    ResponseDone,
    SessionReady,
    SpeechStarted,
    TrackAudio,
)
from agent.bridge.filler import FILLER_ITEM
from agent.bridge.requests import CancelResponse, ConfigureSession, SessionSpec, Truncate
from agent.config import ConfigError, RealtimeSettings, Secrets, Settings
from agent.realtime.adapter import RealtimeAdapter
from agent.realtime.connection import RealtimeConnectError
from agent.realtime.dialect import Dialect
from agent.realtime.endpoint import SdpExchange, resolve_endpoint
from agent.realtime.webrtc.ice import is_loopback
from agent.realtime.webrtc.signalling import exchange_sdp
from testbed.oracle import validate_client_event

KEY = "sk-test-not-a-real-key"
#: 20 ms of a loud square wave at the track's 48 kHz.
TRACK_FRAME = (b"\x00\x40" * 24 + b"\x00\xc0" * 24) * 20


def _bridge() -> CallBridge:
    spec = SessionSpec("Be brief.", "marin", turn_detection={"type": "server_vad"})
    bridge = CallBridge(BridgeConfig(session=spec, webrtc=True))
    bridge.media_started("PCMU", SIP_RATE)
    bridge.server_event(SessionReady(), 0.0)
    bridge.call_confirmed(0.0)
    return bridge


def _play(bridge: CallBridge, frames: int, now: float) -> float:
    for _ in range(frames):
        bridge.server_event(TrackAudio(TRACK_FRAME), now)
        now += 20.0
    return now


def test_track_audio_plays_only_between_the_servers_playout_events() -> None:
    bridge = _bridge()
    bridge.server_event(ResponseCreated("resp_1"), 0.0)
    bridge.server_event(AgentItemStarted("resp_1", "item_1"), 0.0)
    _play(bridge, 5, 0.0)  # the track's audio before the server says it plays: nobody's
    assert bridge.playout.queued_samples == 0
    bridge.server_event(PlayoutStarted("resp_1"), 100.0)
    _play(bridge, 10, 100.0)
    assert bridge.playout.queued_samples > 0
    assert bridge.agent_speaking


def test_barge_in_over_webrtc_cuts_and_truncates_to_what_was_heard() -> None:
    bridge = _bridge()
    bridge.server_event(ResponseCreated("resp_1"), 0.0)
    bridge.server_event(AgentItemStarted("resp_1", "item_1"), 0.0)
    bridge.server_event(PlayoutStarted("resp_1"), 0.0)
    _play(bridge, 25, 0.0)
    for _ in range(10):
        bridge.playout.pull()  # 200 ms handed to the line
    step = bridge.server_event(SpeechStarted(), 500.0)
    assert bridge.playout.queued_samples == 0
    (truncate,) = [r for r in step.requests if isinstance(r, Truncate)]
    assert truncate.item_id == "item_1" and truncate.audio_end_ms == 200
    _play(bridge, 5, 520.0)  # the track's late frames of the cut response
    assert bridge.playout.queued_samples == 0
    bridge.server_event(PlayoutCleared("resp_1"), 540.0)
    assert not bridge.agent_speaking


def test_a_cleared_playout_leaves_a_filler_sound_alone() -> None:
    # Only agent audio queued here stops with the server's own clear: the thinking sound
    # of a running tool is not the agent's speech.
    bridge = _bridge()
    bridge.playout.push(FILLER_ITEM, b"\x00\x01" * 1600)
    step = bridge.server_event(PlayoutCleared("resp_0"), 0.0)
    assert not step.requests
    assert bridge.playout.queued_of(FILLER_ITEM) == 1600


def test_a_hang_up_waits_for_the_servers_playout_to_stop() -> None:
    bridge = _bridge()
    bridge.server_event(ResponseCreated("resp_1"), 0.0)
    bridge.server_event(AgentItemStarted("resp_1", "item_1"), 0.0)
    bridge.server_event(PlayoutStarted("resp_1"), 0.0)
    now = _play(bridge, 3, 0.0)
    bridge.server_event(ResponseDone("resp_1"), now)  # generated, but still playing out
    step = bridge.hang_up_when_quiet("done", now)
    for _ in range(20):
        bridge.playout.pull()
        now += 20.0
        step.add(bridge.tick(now))
    assert not any(isinstance(a, HangUp) for a in step.actions)
    bridge.server_event(PlayoutStopped("resp_1"), now)
    for _ in range(20):
        bridge.playout.pull()
        now += 20.0
        step.add(bridge.tick(now))
    assert any(isinstance(a, HangUp) for a in step.actions)


def test_the_adapter_speaks_webrtc() -> None:
    adapter = RealtimeAdapter(Dialect.GA, webrtc=True)
    for kind, event in (
        ("output_audio_buffer.started", PlayoutStarted("resp_1")),
        ("output_audio_buffer.stopped", PlayoutStopped("resp_1")),
        ("output_audio_buffer.cleared", PlayoutCleared("resp_1")),
    ):
        message = {"type": kind, "event_id": "event_1", "response_id": "resp_1"}
        assert adapter.parse(json.dumps(message)) == [event]
    added = {
        "type": "response.output_item.added",
        "event_id": "event_2",
        "response_id": "resp_1",
        "output_index": 0,
        "item": {"id": "item_1", "type": "message", "role": "assistant", "content": []},
    }
    assert adapter.parse(json.dumps(added)) == [AgentItemStarted("resp_1", "item_1")]
    wire = adapter.wire(CancelResponse())
    assert [e["type"] for e in wire] == ["response.cancel", "output_audio_buffer.clear"]
    spec = SessionSpec("Be brief.", "marin", codec="opus")
    (update,) = adapter.wire(ConfigureSession(spec))
    assert "format" not in update["session"]["audio"]["input"]
    assert "format" not in update["session"]["audio"]["output"]
    for event in [*wire, update]:
        validate_client_event(Dialect.GA, event)


def _settings(**realtime: object) -> Settings:
    rt = dataclasses.replace(RealtimeSettings(), transport="webrtc", **realtime)
    return dataclasses.replace(
        Settings(),
        realtime=rt,
        secrets=Secrets(
            openai_api_key=KEY,
            azure_api_key=KEY,
            azure_endpoint="https://contoso.openai.azure.com",
            azure_deployment="my-realtime",
        ),
    )


def test_the_sdp_exchange_of_each_provider() -> None:
    openai = resolve_endpoint(_settings(provider="openai"))
    assert openai.sdp == SdpExchange("https://api.openai.com/v1/realtime/calls", "gpt-realtime-2.1")
    assert openai.transport == "webrtc" and KEY not in openai.describe()
    azure = resolve_endpoint(_settings(provider="azure"))
    assert azure.sdp == SdpExchange(
        "https://contoso.openai.azure.com/openai/v1/realtime/calls",
        "my-realtime",
        "https://contoso.openai.azure.com/openai/v1/realtime/client_secrets",
    )
    custom = resolve_endpoint(_settings(provider="custom", url="wss://rt.example/v1/realtime"))
    assert custom.sdp is not None and custom.sdp.url == "https://rt.example/v1/realtime/calls"
    local = resolve_endpoint(
        _settings(provider="local"), "ws://127.0.0.1:1/v1/realtime", "http://x/c"
    )
    assert local.sdp is not None and local.sdp.url == "http://x/c"
    with pytest.raises(ConfigError, match="WebRTC endpoint"):
        resolve_endpoint(_settings(provider="local"), "ws://127.0.0.1:1/v1/realtime")
    with pytest.raises(ConfigError, match="beta"):
        resolve_endpoint(_settings(provider="custom", url="ws://h/v1/realtime", dialect="beta"))


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("api.openai.com") and not is_loopback("10.0.0.1")


@pytest.mark.timeout(20)
async def test_sdp_exchange_failures_are_one_line_each() -> None:
    from agent.local.server import LocalRealtimeServer

    async with LocalRealtimeServer(webrtc=True) as server:
        assert server.calls_url is not None
        sdp = SdpExchange(server.calls_url)
        with pytest.raises(RealtimeConnectError) as refused:
            await exchange_sdp("not an offer", sdp, {}, 5.0, "local")
        assert refused.value.status == 400
        assert "SDP exchange: HTTP 400" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(RealtimeConnectError, match="cannot connect"):
        await exchange_sdp("v=0", SdpExchange("http://127.0.0.1:9/v1/realtime/calls"), {}, 2, "x")
