"""The expirer: releases holds whose deadline passed, driven by each partition's hold-expiry set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from prometheus_client import Counter

from eventhunting.bootstrap import Services
from eventhunting.services.orders import ExpiryOutcome, OrderService
from eventhunting.store.consumer_groups import PartitionOwnership, unique_consumer_name

logger = logging.getLogger("eventhunting.consumers.expirer")

# How often the schedules are polled when nothing was due: holds are released within this
# much of their deadline (plus the time to expire what is due).
POLL_INTERVAL_SECONDS = 0.25
# Due orders taken from one partition per round; the rest follow in the next round at once.
BATCH_SIZE = 200
# Orders expired concurrently; each is a read and one append.
CONCURRENCY = 32
# Lease time of a partition: a dead expirer's partitions move to the others within it.
LEASE_MS = 10_000
EXPIRER_GROUP = "expirer"
# After an unexpected error (Redis unreachable) the loop waits this long before polling again.
ERROR_BACKOFF_SECONDS = 1.0

EXPIRY_OUTCOMES = Counter(
    "eventhunting_hold_expiry_total", "Due holds handled by the expirer, by outcome.", ["outcome"]
)


async def expire_due(orders: OrderService, partitions: Sequence[int], now_limit: int) -> int:
    """Expire every due order of `partitions` (up to `now_limit` each); the number handled.

    The schedule entry leaves the set only with the append that expires, cancels or pays the
    order, so a crash at any point leaves it there for the next round: nothing is lost, and a
    second attempt finds the order settled and changes nothing.
    """
    now = orders.clock()
    due = await asyncio.gather(
        *(orders.due_orders(partition, now, now_limit) for partition in partitions)
    )
    order_ids = [order_id for batch in due for order_id in batch]
    if not order_ids:
        return 0
    gate = asyncio.Semaphore(CONCURRENCY)

    async def expire_one(order_id: str) -> None:
        async with gate:
            outcome = await orders.expire(order_id)
            if outcome in (ExpiryOutcome.SETTLED, ExpiryOutcome.MISSING):
                # Nothing is held any more; an entry left behind would be polled forever.
                await orders.forget_schedule(order_id)
            EXPIRY_OUTCOMES.labels(outcome.value).inc()

    await asyncio.gather(*(expire_one(order_id) for order_id in order_ids))
    return len(order_ids)


async def run(services: Services, stop: asyncio.Event) -> None:
    """Poll the hold-expiry schedules of the partitions this process leases until `stop`.

    Any number of expirer processes split the partitions by the same fenced leases as the
    consumer groups (group `expirer`); two expiring one order at once would be harmless
    (the order's version decides), the leases just keep them from doing the work twice.
    """
    orders = services.orders
    ownership = PartitionOwnership(
        services.redis,
        EXPIRER_GROUP,
        unique_consumer_name(),
        services.settings.sales.partitions,
        lease_ms=LEASE_MS,
    )
    leases_stop = asyncio.Event()
    maintaining = asyncio.create_task(ownership.maintain(leases_stop))
    logger.info("expirer started", extra={"consumer": ownership.consumer})
    try:
        while not stop.is_set():
            try:
                for partition in list(ownership.surplus):
                    await ownership.release(partition)
                handled = await expire_due(orders, sorted(ownership.held), BATCH_SIZE)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("expiry round failed")
                await wait_or_stop(stop, ERROR_BACKOFF_SECONDS)
                continue
            if handled == 0:
                await wait_or_stop(stop, POLL_INTERVAL_SECONDS)
    finally:
        leases_stop.set()
        await maintaining
        with contextlib.suppress(Exception):
            await ownership.release_all()
    logger.info("expirer stopped")


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
