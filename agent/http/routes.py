"""``GET /healthz``, ``/readyz`` and ``/metrics``: answers from state already at hand."""

from __future__ import annotations

from aiohttp import web

from agent.observe.metrics import CONTENT_TYPE, AgentMetrics
from agent.observe.readiness import Readiness


def health_routes(readiness: Readiness, metrics: AgentMetrics) -> list[web.RouteDef]:
    async def healthz(request: web.Request) -> web.Response:
        # The process is up and its loop answers: nothing else is asked.
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        checks = readiness.checks()
        ready = all(checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def metrics_text(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    return [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics_text),
    ]
