"""Liveness, readiness (Redis and MongoDB answer) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Literal

import msgspec
from litestar import Controller, Response, get
from litestar.openapi import ResponseSpec
from prometheus_client import generate_latest

from eventhunting.bootstrap import Services

READINESS_TIMEOUT_SECONDS = 2.0

CheckOutcome = Literal["ok", "unavailable"]


class ReadinessChecks(msgspec.Struct, frozen=True, kw_only=True):
    redis: CheckOutcome
    mongodb: CheckOutcome


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the API's stores answer (503 with the same body when one does not)."""

    status: CheckOutcome
    checks: ReadinessChecks


class HealthController(Controller):
    path = ""
    include_in_schema = True
    tags = ["operations"]

    @get("/health/live", summary="The process is up")
    async def live(self) -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/health/ready",
        summary="Redis and MongoDB answer",
        responses={
            503: ResponseSpec(
                Readiness, description="Redis or MongoDB does not answer.", generate_examples=False
            )
        },
    )
    async def ready(self, services: Services) -> Response[Readiness]:
        redis, mongodb = await asyncio.gather(
            self._check(services.redis.ping()),
            self._check(services.mongo.admin.command("ping")),
        )
        healthy = redis == "ok" and mongodb == "ok"
        return Response(
            Readiness(
                status="ok" if healthy else "unavailable",
                checks=ReadinessChecks(redis=redis, mongodb=mongodb),
            ),
            status_code=200 if healthy else 503,
        )

    @staticmethod
    async def _check(probe: Awaitable[object]) -> CheckOutcome:
        try:
            await asyncio.wait_for(probe, timeout=READINESS_TIMEOUT_SECONDS)
        except Exception:
            return "unavailable"
        return "ok"

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
    async def metrics(self) -> bytes:
        return generate_latest()
