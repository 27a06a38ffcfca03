"""Where a realtime session connects to: URL, auth headers and dialect, from settings.

The dialect follows from provider and API version, never from guessing at server replies:
OpenAI and Azure's ``/openai/v1/realtime`` speak GA; Azure's ``api-version=2025-04-01-preview``
speaks beta.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from agent.config import ConfigError, Settings
from agent.realtime.dialect import Dialect
from agent.realtime.models import model_warnings

OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime"


@dataclass(frozen=True)
class RealtimeEndpoint:
    provider: str
    url: str
    dialect: Dialect
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        """One line for logs: provider, URL and dialect; headers (keys) are never included."""
        return f"{self.provider} {self.url} ({self.dialect.value} dialect)"


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


def resolve_endpoint(settings: Settings, local_url: str | None = None) -> RealtimeEndpoint:
    """Build the endpoint for the configured provider.

    ``local_url`` is the URL of the in-process local server, used for provider "local".
    """
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
    deployment = secrets.azure_deployment or rt.model
    api_version = rt.azure_api_version or secrets.azure_api_version
    base = secrets.azure_endpoint.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("https", "wss") or not parts.hostname:
        raise ConfigError(f"AZURE_OPENAI_ENDPOINT: {base!r} is not an https:// URL")
    host = f"wss://{parts.netloc}"
    headers = {"api-key": secrets.azure_api_key}
    if not api_version or api_version == "v1":
        url = f"{host}/openai/v1/realtime?{urlencode({'model': deployment})}"
        return RealtimeEndpoint("azure", url, Dialect.GA, headers)
    query = urlencode({"api-version": api_version, "deployment": deployment})
    url = f"{host}/openai/realtime?{query}"
    dialect = Dialect(rt.dialect or "beta")
    return RealtimeEndpoint("azure", url, dialect, headers)


def configuration_warnings(settings: Settings, endpoint: RealtimeEndpoint) -> list[str]:
    """Deprecated models (realtime, Azure deployment, caller transcription) and the deprecated
    beta dialect, one line each: logged at start and printed by ``voice-agent check``."""
    deployment = settings.secrets.azure_deployment if endpoint.provider == "azure" else ""
    models = (settings.realtime.model, deployment, settings.agent.input_transcription_model)
    return model_warnings(models, endpoint.dialect is Dialect.BETA)
