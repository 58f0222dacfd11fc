"""Liveness, readiness (Redis and MongoDB answer) and Prometheus metrics."""

from __future__ import annotations

import os
from typing import Literal

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import ResponseSpec
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess

from eventhunting.bootstrap import Services
from eventhunting.services.readiness import Readiness, StoreReadiness


class Liveness(msgspec.Struct, frozen=True, kw_only=True):
    """The server process that answered is up."""

    status: Literal["ok"]
    pid: int
    """Its process id: with `eventhunting api --workers N`, which of the N processes answered."""


def provide_readiness(state: State) -> StoreReadiness:
    services: Services = state.services
    return services.readiness


class HealthController(Controller):
    path = ""
    include_in_schema = True
    tags = ["operations"]
    dependencies = {"readiness": Provide(provide_readiness, sync_to_thread=False)}

    @get("/health/live", summary="The process is up")
    async def live(self) -> Liveness:
        return Liveness(status="ok", pid=os.getpid())

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
        return generate_latest(metrics_registry())


def metrics_registry() -> CollectorRegistry:
    """This process's metrics; those of every server process when they share a directory.

    `eventhunting api --workers N` gives its processes one PROMETHEUS_MULTIPROC_DIR, where
    each writes its counters; any of them can then answer for all (prometheus_client's
    multiprocess mode).
    """
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry
