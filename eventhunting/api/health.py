"""Liveness, readiness (Redis and MongoDB answer) and Prometheus metrics."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import ResponseSpec
from prometheus_client import generate_latest

from eventhunting.bootstrap import Services
from eventhunting.services.readiness import Readiness, StoreReadiness


def provide_readiness(state: State) -> StoreReadiness:
    services: Services = state.services
    return services.readiness


class HealthController(Controller):
    path = ""
    include_in_schema = True
    tags = ["operations"]
    dependencies = {"readiness": Provide(provide_readiness, sync_to_thread=False)}

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
    async def ready(self, readiness: StoreReadiness) -> Response[Readiness]:
        outcome = await readiness.check()
        return Response(outcome, status_code=200 if outcome.ready else 503)

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
    async def metrics(self) -> bytes:
        return generate_latest()
