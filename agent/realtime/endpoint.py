"""Where a realtime session connects to: URL, auth headers, protocol and dialect, from
settings.

The protocol is the profile's (``realtime.protocol``: the Realtime API or GPT-Live); the
dialect follows from provider and API version, never from guessing at server replies: OpenAI
and Azure's ``/openai/v1/realtime`` speak GA; Azure's ``api-version=2025-04-01-preview`` speaks
beta. A GPT-Live session also has a delegation endpoint: the Responses WebSocket its tools run
through.

Over WebRTC (``realtime.transport = "webrtc"``) a Realtime session is reached through an SDP
exchange (:class:`SdpExchange`) at each provider's calls endpoint: OpenAI's
``/v1/realtime/calls`` takes the offer with the API key (the model in a multipart ``session``
part), Azure's ``/openai/v1/realtime/calls`` takes it raw with an ephemeral key minted at
``/openai/v1/realtime/client_secrets``; the local backend serves the OpenAI shape. A GPT-Live
session over WebRTC is created with ``POST /v1/live/sessions`` (Azure:
``/openai/v1/live/sessions``): a JSON body with the session's whole configuration and the
offer, the answer in the JSON reply; the provider's key authenticates it (Live has no
ephemeral keys), and the HTTP request itself starts the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import urlencode, urlsplit

from agent.config import ConfigError, Settings
from agent.realtime.dialect import Dialect
from agent.realtime.models import model_warnings

OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime"
OPENAI_LIVE_URL = "wss://api.openai.com/v1/live/sessions"
OPENAI_RESPONSES_URL = "wss://api.openai.com/v1/responses"
#: Where a server speaking GPT-Live (ours, a custom one) has its Responses WebSocket.
RESPONSES_PATH = "/v1/responses"
LIVE_PATH = "/v1/live/sessions"
OPENAI_CALLS_URL = "https://api.openai.com/v1/realtime/calls"
AZURE_CALLS_PATH = "/openai/v1/realtime/calls"
AZURE_CLIENT_SECRETS_PATH = "/openai/v1/realtime/client_secrets"
WEBSOCKET = "websocket"
WEBRTC = "webrtc"
REALTIME = "realtime"
LIVE = "live"


@dataclass(frozen=True)
class DelegationEndpoint:
    """The Responses WebSocket a GPT-Live call's delegated work (its tools) runs through."""

    url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class SdpExchange:
    """Where a WebRTC session's SDP offer goes (HTTP POST), and how.

    ``model`` set: a multipart body with the offer and a ``session`` part naming the model
    (OpenAI's unified interface); empty: the raw offer (``application/sdp``).
    ``client_secret_url`` set: first mint an ephemeral key there with the endpoint's
    headers, then post the offer with only that key (Azure)."""

    url: str
    model: str = ""
    client_secret_url: str = ""
    #: GPT-Live: the body is JSON, ``{"session": <configuration>, "transport": {"type":
    #: "webrtc", "sdp": <offer>}}``, and the reply's ``transport.sdp`` is the answer.
    live: bool = False


@dataclass(frozen=True)
class RealtimeEndpoint:
    provider: str
    url: str
    dialect: Dialect
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    #: "realtime" or "live".
    protocol: str = REALTIME
    #: GPT-Live only: where delegated work goes.
    delegation: DelegationEndpoint | None = None
    #: Over WebRTC: the SDP exchange that opens the session (None: WebSocket at ``url``).
    sdp: SdpExchange | None = None

    @property
    def transport(self) -> str:
        return WEBRTC if self.sdp is not None else WEBSOCKET

    def describe(self) -> str:
        """One line for logs: provider, URL, protocol and transport; headers (keys) are never
        included."""
        if self.protocol == LIVE:
            url = self.sdp.url if self.sdp is not None else self.url
            return f"{self.provider} {url} (GPT-Live over {self.transport})"
        if self.sdp is not None:
            return f"{self.provider} {self.sdp.url} ({self.dialect.value} dialect over webrtc)"
        return f"{self.provider} {self.url} ({self.dialect.value} dialect over websocket)"


def choose_provider(settings: Settings) -> str:
    """The provider to use; "auto" means the first one with credentials, else the local backend."""
    provider = settings.realtime.provider
    if provider != "auto":
        return provider
    if settings.realtime.url:
        return "custom"
    secrets = settings.secrets
    if secrets.openai_api_key:
        return "openai"
    if secrets.azure_api_key and secrets.azure_endpoint:
        return "azure"
    return "local"


def _check_ws_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(f"{where}: {url!r} is not a ws:// or wss:// URL")


def _origin(url: str, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    return f"{scheme or parts.scheme}://{parts.netloc}"


def resolve_endpoint(
    settings: Settings, local_url: str | None = None, local_calls_url: str | None = None
) -> RealtimeEndpoint:
    """Build the endpoint for the configured provider, protocol and transport.

    ``local_url`` is the WebSocket URL of the in-process local server, ``local_calls_url``
    its WebRTC calls endpoint, used for provider "local".
    """
    webrtc = settings.realtime.transport == WEBRTC
    if settings.realtime.protocol == LIVE:
        live = _live_endpoint(settings, local_url)
        if not webrtc:
            return live
        return replace(live, sdp=_live_sdp_exchange(settings, live, local_calls_url))
    endpoint = _realtime_endpoint(settings, local_url)
    if not webrtc:
        return endpoint
    if endpoint.dialect is not Dialect.GA:
        raise ConfigError(
            "realtime.transport: webrtc needs the GA dialect (Azure: api-version v1, "
            "the /openai/v1/realtime path); the beta dialect runs over websocket only"
        )
    return replace(endpoint, sdp=_sdp_exchange(settings, endpoint, local_calls_url))


def _sdp_exchange(
    settings: Settings, endpoint: RealtimeEndpoint, local_calls_url: str | None
) -> SdpExchange:
    model = settings.realtime.model
    if endpoint.provider == "local":
        if local_calls_url is None:
            raise ConfigError("realtime: the local backend's WebRTC endpoint is not running")
        return SdpExchange(local_calls_url, model)
    if endpoint.provider == "openai":
        return SdpExchange(OPENAI_CALLS_URL, model)
    if endpoint.provider == "azure":
        base = "https://" + urlsplit(endpoint.url).netloc
        deployment = settings.secrets.azure_deployment or model
        return SdpExchange(
            base + AZURE_CALLS_PATH, deployment, client_secret_url=base + AZURE_CLIENT_SECRETS_PATH
        )
    if settings.realtime.webrtc_url:
        if urlsplit(settings.realtime.webrtc_url).scheme not in ("http", "https"):
            raise ConfigError("realtime.webrtc_url: not an http:// or https:// URL")
        return SdpExchange(settings.realtime.webrtc_url, model)
    # custom: the calls endpoint beside its WebSocket path, as OpenAI lays them out.
    parts = urlsplit(endpoint.url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return SdpExchange(f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/calls", model)


def _live_sdp_exchange(
    settings: Settings, endpoint: RealtimeEndpoint, local_calls_url: str | None
) -> SdpExchange:
    """Where a GPT-Live WebRTC session is created: the same path as its WebSocket, over
    HTTP(S), with the same key (the model goes in the JSON body's session)."""
    if endpoint.provider == "local":
        if local_calls_url is None:
            raise ConfigError("realtime: the local backend's WebRTC endpoint is not running")
        return SdpExchange(_origin(local_calls_url) + LIVE_PATH, live=True)
    if endpoint.provider == "custom" and settings.realtime.webrtc_url:
        if urlsplit(settings.realtime.webrtc_url).scheme not in ("http", "https"):
            raise ConfigError("realtime.webrtc_url: not an http:// or https:// URL")
        return SdpExchange(settings.realtime.webrtc_url, live=True)
    parts = urlsplit(endpoint.url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return SdpExchange(f"{scheme}://{parts.netloc}{parts.path}", live=True)


def _realtime_endpoint(settings: Settings, local_url: str | None) -> RealtimeEndpoint:
    rt = settings.realtime
    secrets = settings.secrets
    provider = choose_provider(settings)
    if provider == "local":
        if local_url is None:
            raise ConfigError("realtime: the local backend is not running")
        dialect = Dialect(rt.dialect or "ga")
        url = local_url if dialect is Dialect.GA else f"{local_url}?dialect=beta"
        return RealtimeEndpoint("local", url, dialect)
    if provider == "openai":
        if not secrets.openai_api_key:
            raise ConfigError("realtime.provider is 'openai' but OPENAI_API_KEY is not set")
        url = f"{OPENAI_REALTIME_URL}?{urlencode({'model': rt.model})}"
        headers = {"Authorization": f"Bearer {secrets.openai_api_key}"}
        return RealtimeEndpoint("openai", url, Dialect.GA, headers)
    if provider == "azure":
        return _azure_endpoint(settings)
    if not rt.url:
        raise ConfigError("realtime.provider is 'custom' but realtime.url is empty")
    _check_ws_url(rt.url, "realtime.url")
    headers = {}
    if secrets.realtime_api_key:
        headers["Authorization"] = f"Bearer {secrets.realtime_api_key}"
    return RealtimeEndpoint("custom", rt.url, Dialect(rt.dialect or "ga"), headers)


def _azure_endpoint(settings: Settings) -> RealtimeEndpoint:
    rt = settings.realtime
    secrets = settings.secrets
    host = _azure_base(settings)
    deployment = secrets.azure_deployment or rt.model
    api_version = rt.azure_api_version or secrets.azure_api_version
    headers = {"api-key": secrets.azure_api_key}
    if not api_version or api_version == "v1":
        url = f"{host}/openai/v1/realtime?{urlencode({'model': deployment})}"
        return RealtimeEndpoint("azure", url, Dialect.GA, headers)
    query = urlencode({"api-version": api_version, "deployment": deployment})
    url = f"{host}/openai/realtime?{query}"
    dialect = Dialect(rt.dialect or "beta")
    return RealtimeEndpoint("azure", url, dialect, headers)


def _live_endpoint(settings: Settings, local_url: str | None) -> RealtimeEndpoint:
    """GPT-Live: one URL with no query (the model goes in ``session.start``), plus the
    Responses WebSocket for delegated work."""
    rt, live, secrets = settings.realtime, settings.live, settings.secrets
    provider = choose_provider(settings)
    headers: dict[str, str] = {}
    if provider == "local":
        if local_url is None:
            raise ConfigError("realtime: the local backend is not running")
        url = _origin(local_url) + LIVE_PATH
        delegation_url = _origin(local_url) + RESPONSES_PATH
    elif provider == "openai":
        if not secrets.openai_api_key:
            raise ConfigError("realtime.provider is 'openai' but OPENAI_API_KEY is not set")
        url, delegation_url = OPENAI_LIVE_URL, OPENAI_RESPONSES_URL
        headers = {"Authorization": f"Bearer {secrets.openai_api_key}"}
    elif provider == "azure":
        base = _azure_base(settings)
        url = base + live.azure_path
        delegation_url = base + "/openai/v1/responses"
        headers = {"api-key": secrets.azure_api_key}
    else:
        if not rt.url:
            raise ConfigError("realtime.provider is 'custom' but realtime.url is empty")
        _check_ws_url(rt.url, "realtime.url")
        if urlsplit(rt.url).query:
            raise ConfigError("realtime.url: GPT-Live takes no query parameters in its URL")
        url = rt.url
        delegation_url = _origin(rt.url) + RESPONSES_PATH
        if secrets.realtime_api_key:
            headers = {"Authorization": f"Bearer {secrets.realtime_api_key}"}
    if live.delegation_url:
        delegation_url = live.delegation_url
    delegation = DelegationEndpoint(delegation_url, live.delegation_model, dict(headers))
    return RealtimeEndpoint(provider, url, Dialect.GA, headers, LIVE, delegation)


def _azure_base(settings: Settings) -> str:
    """``wss://<resource host>`` from AZURE_OPENAI_ENDPOINT, with the key checked."""
    secrets = settings.secrets
    missing = [
        name
        for name, value in (
            ("AZURE_OPENAI_API_KEY", secrets.azure_api_key),
            ("AZURE_OPENAI_ENDPOINT", secrets.azure_endpoint),
        )
        if not value
    ]
    if missing:
        raise ConfigError(f"realtime.provider is 'azure' but {', '.join(missing)} is not set")
    base = secrets.azure_endpoint.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("https", "wss") or not parts.hostname:
        raise ConfigError(f"AZURE_OPENAI_ENDPOINT: {base!r} is not an https:// URL")
    return f"wss://{parts.netloc}"


def configuration_warnings(settings: Settings, endpoint: RealtimeEndpoint) -> list[str]:
    """Deprecated models (session model, Azure deployment, caller transcription), a model for
    the other API, settings the protocol ignores and the deprecated beta dialect, one line each:
    logged at start and printed by ``voice-agent check``."""
    if endpoint.protocol == LIVE:
        return model_warnings((settings.live.model,), False, LIVE) + _live_ignores(settings)
    deployment = settings.secrets.azure_deployment if endpoint.provider == "azure" else ""
    models = (
        deployment or settings.realtime.model,
        settings.realtime.model,
        settings.agent.input_transcription_model,
    )
    warnings = model_warnings(models, endpoint.dialect is Dialect.BETA, REALTIME)
    if endpoint.dialect is Dialect.BETA:
        warnings.extend(_beta_ignores(settings))
    return warnings


def _live_ignores(settings: Settings) -> list[str]:
    """Realtime settings a GPT-Live session has no place for (its server owns turn-taking)."""
    profile, defaults = settings.agent, type(settings.agent)()
    ignored = [
        name
        for name in ("turn_detection", "speed", "reasoning_effort", "truncation", "prompt")
        if getattr(profile, name) != getattr(defaults, name)
    ]
    if settings.tools.server_mcp:
        ignored.append("[[tools.server_mcp]]")
    return [f"GPT-Live has no {name}: the setting is ignored" for name in ignored]


def _beta_ignores(settings: Settings) -> list[str]:
    profile, defaults = settings.agent, type(settings.agent)()
    ignored = [
        f"agent.{name}"
        for name in ("speed", "reasoning_effort", "truncation", "noise_reduction_strength")
        if getattr(profile, name) != getattr(defaults, name)
    ]
    if settings.tools.server_mcp:
        ignored.append("[[tools.server_mcp]]")
    return [f"the beta dialect has no {name}: the setting is ignored" for name in ignored]
