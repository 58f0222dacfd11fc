"""Whether the stores a process depends on answer: the readiness probe's one question."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Literal

import msgspec
from pymongo import AsyncMongoClient

from eventhunting.store.redis_client import RedisClient

CHECK_TIMEOUT_SECONDS = 2.0

CheckOutcome = Literal["ok", "unavailable"]


class ReadinessChecks(msgspec.Struct, frozen=True, kw_only=True):
    redis: CheckOutcome
    mongodb: CheckOutcome


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the API's stores answer (503 with the same body when one does not)."""

    status: CheckOutcome
    checks: ReadinessChecks

    @property
    def ready(self) -> bool:
        return self.status == "ok"


class StoreReadiness:
    """Pings Redis and MongoDB at once, each within a time limit."""

    def __init__(
        self,
        redis: RedisClient,
        mongo: AsyncMongoClient[dict[str, Any]],
        *,
        timeout_seconds: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self.redis = redis
        self.mongo = mongo
        self.timeout_seconds = timeout_seconds

    async def check(self) -> Readiness:
        redis, mongodb = await asyncio.gather(
            self._outcome(self.redis.ping()),
            self._outcome(self.mongo.admin.command("ping")),
        )
        return Readiness(
            status="ok" if redis == "ok" and mongodb == "ok" else "unavailable",
            checks=ReadinessChecks(redis=redis, mongodb=mongodb),
        )

    async def _outcome(self, probe: Awaitable[object]) -> CheckOutcome:
        try:
            await asyncio.wait_for(probe, timeout=self.timeout_seconds)
        except Exception:
            return "unavailable"
        return "ok"
