"""``[profiles.NAME]`` at run time: the settings, realtime endpoint and tools of each.

A profile replaces the ``[agent]``, ``[tools]`` and ``[realtime]`` sections of the base
settings (``agent.config`` has already merged it over them); everything else, the SIP side
above all, stays the process's own. Each profile gets its own tool catalog (its custom tools
and MCP servers), so one number's tools are never offered on another.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from agent.config import Settings
from agent.realtime.endpoint import RealtimeEndpoint, resolve_endpoint
from agent.tools.catalog import ToolCatalog


def profile_settings(settings: Settings, name: str) -> Settings:
    """``settings`` as a call routed to profile ``name`` sees them."""
    profile = settings.profiles[name]
    return dataclasses.replace(
        settings, agent=profile.agent, tools=profile.tools, realtime=profile.realtime
    )


@dataclass
class ProfileRuntime:
    settings: Settings
    endpoint: RealtimeEndpoint | None
    #: Built at once: a profile's broken custom tool stops the start (ConfigError).
    catalog: ToolCatalog = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = ToolCatalog(self.settings.tools)

    def start(self, local_url: str | None, local_calls_url: str | None = None) -> None:
        """Resolve the profile's realtime endpoint (the embedded server's URLs, if it runs:
        its WebSocket and its WebRTC calls endpoint)."""
        self.endpoint = resolve_endpoint(self.settings, local_url, local_calls_url)

    async def close(self) -> None:
        await self.catalog.close()
