"""Runs the projector over the store-test events as its own process (for crash tests)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from eventhunting.projections.base import run_projector
from eventhunting.store.consumer_groups import ConsumerConfig
from tests.support.basket_projection import BasketProjection
from tests.support.store_events import store_test_registry


async def main(arguments: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    redis = aioredis.Redis.from_url(arguments.redis)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(arguments.mongodb, tz_aware=True)
    try:
        await run_projector(
            redis,
            mongo[arguments.database],
            [BasketProjection()],
            ConsumerConfig(
                block_ms=50,
                count=arguments.count,
                lease_ms=arguments.lease_ms,
                max_deliveries=5,
                retry_delay_ms=50,
            ),
            stop,
            partitions=arguments.partitions,
            consumer=arguments.consumer,
            event_registry=store_test_registry,
        )
    finally:
        await redis.aclose()
        await mongo.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--mongodb", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--lease-ms", type=int, default=1_000)
    asyncio.run(main(parser.parse_args()))
