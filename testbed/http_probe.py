"""HTTP as a prober or a scraper sees the agent: GET with a bound wait, Prometheus samples."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, str]:
    """Status and body of ``GET url``."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        return response.status, await response.text()


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample(exposition: str, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series is not there."""
    return samples(exposition).get((name, frozenset(labels.items())), 0.0)


async def scrape(base_url: str) -> str:
    """The agent's ``/metrics``."""
    status, text = await http_get(f"{base_url}/metrics")
    assert status == 200, f"/metrics answered {status}"
    return text
