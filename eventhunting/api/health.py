"""Liveness, readiness (Redis and MongoDB answer) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Response, get
from prometheus_client import generate_latest

from eventhunting.bootstrap import Services

READINESS_TIMEOUT_SECONDS = 2.0


class HealthController(Controller):
    path = ""
    include_in_schema = True
    tags = ["operations"]

    @get("/health/live", summary="The process is up")
    async def live(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/health/ready", summary="Redis and MongoDB answer")
    async def ready(self, services: Services) -> Response[dict[str, Any]]:
        checks = await asyncio.gather(
            self._check(services.redis.ping()),
            self._check(services.mongo.admin.command("ping")),
        )
        body = {"redis": checks[0], "mongodb": checks[1]}
        healthy = all(value == "ok" for value in checks)
        return Response(
            {"status": "ok" if healthy else "unavailable", "checks": body},
            status_code=200 if healthy else 503,
        )

    @staticmethod
    async def _check(probe: Any) -> str:
        try:
            await asyncio.wait_for(probe, timeout=READINESS_TIMEOUT_SECONDS)
        except Exception:
            return "unavailable"
        return "ok"

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
    async def metrics(self) -> bytes:
        return generate_latest()
