"""GPT-Live over WebRTC without SIP: the endpoint of each provider, the session configuration
going into the SDP exchange (and nothing for it on the channel), the Live adapter telling the
model's track audio from the silence between its turns, the bridge yielding at the caller's
transcript, and the local server's session creation refusing what the real one refuses."""

from __future__ import annotations

import dataclasses
import json

import aiohttp
import pytest
from openai.types.live import LiveCreateResponse
from openai.types.live.live_create_params import LiveCreateParams
from pydantic import TypeAdapter

from agent.audio.pcm import SIP_RATE
from agent.bridge import BridgeConfig, CallBridge
from agent.bridge.events import (
    AudioDelta,
    AudioDone,
    CallerHeard,
    CallerTranscript,
    ResponseCreated,
    SessionReady,
)
from agent.bridge.requests import AppendAudio, ConfigureSession, SessionSpec, Turn
from agent.config import ConfigError, RealtimeSettings, Secrets, Settings
from agent.live.adapter import TRACK_LAG_MS, TRACK_PAUSE_MS, LiveAdapter
from agent.local.live.protocol import LiveProtocol
from agent.local.server import LocalRealtimeServer
from agent.local.webrtc.tracked_live import TrackedLive
from agent.realtime.connection import RealtimeConnectError
from agent.realtime.endpoint import SdpExchange, resolve_endpoint
from agent.realtime.webrtc.signalling import exchange_sdp
from testbed.oracle import LIVE, validate_server_event

KEY = "sk-test-not-a-real-key"
#: 20 ms at the track's 48 kHz: a loud square wave, and silence.
LOUD = (b"\x00\x40" * 24 + b"\x00\xc0" * 24) * 20
QUIET = bytes(960 * 2)
_CREATE = TypeAdapter(LiveCreateParams)


def _settings(**realtime: object) -> Settings:
    rt = dataclasses.replace(RealtimeSettings(), transport="webrtc", protocol="live", **realtime)
    return dataclasses.replace(
        Settings(),
        realtime=rt,
        secrets=Secrets(
            openai_api_key=KEY,
            azure_api_key=KEY,
            azure_endpoint="https://contoso.openai.azure.com",
            realtime_api_key=KEY,
        ),
    )


def test_each_provider_creates_live_sessions_over_webrtc_where_its_websocket_is() -> None:
    openai = resolve_endpoint(_settings(provider="openai"))
    assert openai.sdp == SdpExchange("https://api.openai.com/v1/live/sessions", live=True)
    assert openai.headers == {"Authorization": f"Bearer {KEY}"}
    assert openai.transport == "webrtc" and KEY not in openai.describe()
    assert "GPT-Live over webrtc" in openai.describe()
    azure = resolve_endpoint(_settings(provider="azure"))
    assert azure.sdp == SdpExchange(
        "https://contoso.openai.azure.com/openai/v1/live/sessions", live=True
    )
    assert azure.headers == {"api-key": KEY}
    custom = resolve_endpoint(
        _settings(provider="custom", url="wss://live.example/v1/live/sessions")
    )
    assert custom.sdp == SdpExchange("https://live.example/v1/live/sessions", live=True)
    # Delegated work still goes to the Responses WebSocket beside it.
    assert custom.delegation is not None
    assert custom.delegation.url == "wss://live.example/v1/responses"
    routed = resolve_endpoint(
        _settings(provider="custom", url="ws://h:1/v1/live/sessions", webrtc_url="http://h:2/s")
    )
    assert routed.sdp == SdpExchange("http://h:2/s", live=True)
    local = resolve_endpoint(
        _settings(provider="local"), "ws://127.0.0.1:1/v1/realtime", "http://127.0.0.1:2/x"
    )
    assert local.sdp == SdpExchange("http://127.0.0.1:2/v1/live/sessions", live=True)
    with pytest.raises(ConfigError, match="WebRTC endpoint"):
        resolve_endpoint(_settings(provider="local"), "ws://127.0.0.1:1/v1/realtime")


def _spec() -> SessionSpec:
    return SessionSpec(
        "Be brief.", "marin", model="gpt-live-1", codec="opus", acknowledgement_delay_ms=300
    )


def test_the_configuration_goes_into_the_sdp_exchange_and_nothing_on_the_channel() -> None:
    adapter = LiveAdapter(webrtc=True)
    configure = ConfigureSession(_spec())
    session = adapter.creation([configure])
    assert session is not None
    _CREATE.validate_python(
        {"session": session, "transport": {"type": "webrtc", "sdp": "v=0"}}, strict=True
    )
    assert session["model"] == "gpt-live-1" and session["audio"] == {"output": {"voice": "marin"}}
    assert session["delegation"] == {"type": "client", "acknowledgement_delay_ms": 300}
    # Not on the channel: the HTTP request started the session. Audio rides the track.
    assert adapter.encode(configure) == [] and adapter.encode(AppendAudio(b"\0\0")) == []
    # A replacement session carries the conversation in its creation request too.
    turns = (Turn("assistant", "Hello, how can I help?"), Turn("user", "Opening hours?"))
    carried = adapter.creation([ConfigureSession(dataclasses.replace(_spec(), history=turns))])
    assert carried is not None and [m["role"] for m in carried["input"]] == ["assistant", "user"]
    _CREATE.validate_python(
        {"session": carried, "transport": {"type": "webrtc", "sdp": "v=0"}}, strict=True
    )
    # Over WebSocket the same request is the session.start it always was.
    websocket = LiveAdapter()
    assert websocket.creation([configure]) is None
    (start,) = websocket.wire(ConfigureSession(dataclasses.replace(_spec(), codec="pcmu")))
    assert start["type"] == "session.start" and "format" in start["session"]["audio"]


def test_track_audio_is_the_agents_only_while_it_speaks() -> None:
    adapter = LiveAdapter(webrtc=True)
    # The silence a track carries between turns is nobody's.
    assert adapter.track_audio(QUIET) == []
    created, delta = adapter.track_audio(LOUD)
    assert isinstance(created, ResponseCreated) and isinstance(delta, AudioDelta)
    turn = delta.item_id
    assert delta.voiced and delta.audio == LOUD
    # A pause inside the turn keeps its time, unvoiced; longer quiet is the turn's end.
    pause = [adapter.track_audio(QUIET) for _ in range(int(TRACK_PAUSE_MS // 20))]
    assert all(len(events) == 1 and not events[0].voiced for events in pause)
    assert adapter.track_audio(QUIET) == []
    (again,) = adapter.track_audio(LOUD)
    assert isinstance(again, AudioDelta) and again.item_id == turn and again.voiced


def test_the_callers_transcript_ends_the_turn_and_the_tracks_lag_is_dropped() -> None:
    adapter = LiveAdapter(webrtc=True)
    adapter.track_audio(LOUD)
    heard = json.dumps(
        {"type": "session.input_transcript.delta", "event_id": "e1", "delta": "wait", "start_ms": 0}
    )
    events = adapter.parse(heard)
    assert isinstance(events[0], AudioDone) and isinstance(events[-1], CallerHeard)
    # What the track still brings was sent before the server heard the caller.
    lagged = [adapter.track_audio(LOUD) for _ in range(int(TRACK_LAG_MS // 20))]
    assert lagged == [[]] * len(lagged)
    # Then the model talking on is a new turn (closing the caller's).
    closed, created, delta = adapter.track_audio(LOUD)
    assert isinstance(closed, CallerTranscript) and closed.text == "wait"
    assert isinstance(created, ResponseCreated) and isinstance(delta, AudioDelta)


def _bridge(webrtc: bool) -> CallBridge:
    spec = SessionSpec("Be brief.", "marin", model="gpt-live-1")
    bridge = CallBridge(BridgeConfig(session=spec, protocol="live", webrtc=webrtc))
    return bridge


def test_the_bridge_configures_a_webrtc_live_session_without_waiting_for_the_codec() -> None:
    websocket = _bridge(webrtc=False)
    assert websocket.session_config().requests == [] and websocket.config_waiting
    webrtc = _bridge(webrtc=True)
    (configure,) = webrtc.session_config().requests
    assert isinstance(configure, ConfigureSession) and configure.spec.codec == "opus"
    assert not webrtc.config_waiting
    step = webrtc.media_started("PCMU", SIP_RATE)
    assert not [r for r in step.requests if isinstance(r, ConfigureSession)]


def _speaking(webrtc: bool) -> tuple[CallBridge, LiveAdapter, float]:
    bridge = _bridge(webrtc)
    adapter = LiveAdapter(webrtc=webrtc)
    bridge.session_config()
    bridge.media_started("PCMU", SIP_RATE)
    bridge.server_event(SessionReady(), 0.0)
    bridge.call_confirmed(0.0)
    now = 0.0
    for _ in range(10):
        for event in adapter.track_audio(LOUD):
            bridge.server_event(event, now)
        now += 20.0
    return bridge, adapter, now


def test_over_webrtc_the_agent_yields_at_the_callers_transcript() -> None:
    bridge, adapter, now = _speaking(webrtc=True)
    assert bridge.playout.queued_samples
    heard = {"type": "session.input_transcript.delta", "event_id": "e1", "delta": "wait"}
    notes = []
    for event in adapter.parse(json.dumps({**heard, "start_ms": 0})):
        notes += [a for a in bridge.server_event(event, now).actions if hasattr(a, "event")]
    # At once (the track was loud a moment ago: over WebSocket that would wait for a gap).
    assert bridge.playout.queued_samples == 0
    assert any(note.event == "barge_in" for note in notes)


def test_over_websocket_the_same_transcript_waits_for_the_servers_audio_to_stop() -> None:
    bridge = _bridge(webrtc=False)
    bridge.session_config()
    bridge.media_started("PCMU", SIP_RATE)
    bridge.server_event(SessionReady(), 0.0)
    bridge.call_confirmed(0.0)
    bridge.server_event(ResponseCreated("t1"), 0.0)
    bridge.server_event(AudioDelta("t1", "t1", b"\x7f" * 1600), 0.0)
    bridge.server_event(CallerHeard("c1", "wait"), 10.0)
    assert bridge.playout.queued_samples  # the model may be talking on


@pytest.mark.timeout(20)
async def test_the_local_server_creates_live_sessions_as_gpt_live_does() -> None:
    async with LocalRealtimeServer(webrtc=True) as server:
        url = server.live_calls_url
        assert url is not None
        sdp = SdpExchange(url, live=True)
        # A format is for a primary WebSocket: the real server refuses it here, so do we.
        bad = {"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}
        with pytest.raises(RealtimeConnectError) as refused:
            await exchange_sdp("v=0\r\n", sdp, {}, 5.0, "local", bad)
        assert refused.value.status == 400 and "audio.format" in str(refused.value)
        assert "\n" not in str(refused.value)
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"session": {"model": "gpt-live-1"}}) as reply:
                assert reply.status == 400
                assert (await reply.json())["error"]["param"] == "transport"
            # An offer from a real peer connection is answered in GPT-Live's shape.
            from aiortc import RTCPeerConnection

            pc = RTCPeerConnection()
            pc.createDataChannel("oai-events")
            pc.addTransceiver("audio")
            await pc.setLocalDescription(await pc.createOffer())
            body = {
                "session": {"model": "gpt-live-1"},
                "transport": {"type": "webrtc", "sdp": pc.localDescription.sdp},
            }
            _CREATE.validate_python(body, strict=True)
            async with http.post(url, json=body) as reply:
                assert reply.status == 200
                created = LiveCreateResponse.model_validate(await reply.json())
            await pc.close()
        assert created.session.id.startswith("sess") and created.transport.sdp.startswith("v=0")


def test_a_webrtc_live_session_refuses_audio_on_the_channel_and_a_second_start() -> None:
    tracked = TrackedLive(LiveProtocol(), {"model": "gpt-live-1"}, 0.0)
    (started,) = tracked.start()
    validate_server_event(LIVE, started)
    assert started["type"] == "session.started" and "format" not in started["session"]["audio"]
    append = json.dumps({"type": "session.input_audio.append", "audio": "AAAA"})
    (error,) = tracked.receive(append, 0.1)
    validate_server_event(LIVE, error)
    assert "media track" in error["error"]["message"]
    start = json.dumps({"type": "session.start", "session": {"model": "gpt-live-1"}})
    (again,) = tracked.receive(start, 0.2)
    assert again["error"]["code"] == "session_already_started"
    tracked.close()
