"""Background workers by name, and the process that runs a set of them until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from prometheus_client import start_http_server

from eventhunting.bootstrap import Services, build_services, merchant_credentials
from eventhunting.consumers import expirer, mailer
from eventhunting.consumers.dead_letter_retries import DeadLetterRetries
from eventhunting.consumers.reconciler import RECONCILER_GROUP, Reconciler
from eventhunting.payments.vnpay_api import VnpayGateway
from eventhunting.projections.base import run_projector
from eventhunting.projections.registry import load_projections
from eventhunting.settings import Settings
from eventhunting.store.archive import run_archiver
from eventhunting.store.consumer_groups import (
    ConsumerConfig,
    ConsumerGroup,
    PartitionOwnership,
    unique_consumer_name,
)
from eventhunting.store.envelope import EventEnvelope

logger = logging.getLogger("eventhunting.workers")

Worker = Callable[[Services, asyncio.Event], Coroutine[Any, Any, None]]


async def archiver(services: Services, stop: asyncio.Event) -> None:
    """`eventhunting worker archiver`: copy every event into the MongoDB archive."""
    await run_archiver(
        services.redis,
        services.database,
        ConsumerConfig(),
        stop,
        partitions=services.settings.sales.partitions,
        consumer=unique_consumer_name(),
    )


async def projector(services: Services, stop: asyncio.Event) -> None:
    """`eventhunting worker projector`: keep every registered read model up to date."""
    await run_projector(
        services.redis,
        services.database,
        load_projections(),
        ConsumerConfig(),
        stop,
        partitions=services.settings.sales.partitions,
        consumer=unique_consumer_name(),
    )


async def reconciler(services: Services, stop: asyncio.Event) -> None:
    """`eventhunting worker reconciler`: refunds through VNPAY, and querydr for lost IPNs."""
    credentials = merchant_credentials(services.settings)
    if credentials is None:
        logger.error(
            "the reconciler needs EVENTHUNTING_VNPAY_TMN_CODE and EVENTHUNTING_VNPAY_HASH_SECRET"
        )
        await stop.wait()
        return
    consumer = unique_consumer_name()
    partitions = services.settings.sales.partitions
    async with VnpayGateway(credentials, services.settings.vnpay.api_url) as gateway:
        reconciling = Reconciler(
            services.payments,
            gateway,
            check_delay_seconds=services.settings.vnpay.payment_check_delay_seconds,
            refund_retry_initial_seconds=services.settings.vnpay.refund_retry_initial_seconds,
            refund_retry_max_seconds=services.settings.vnpay.refund_retry_max_seconds,
        )
        group: ConsumerGroup[EventEnvelope] = ConsumerGroup(
            services.redis, RECONCILER_GROUP, consumer, partitions, reconciling, ConsumerConfig()
        )
        checks = PartitionOwnership(
            services.redis, f"{RECONCILER_GROUP}-checks", consumer, partitions, lease_ms=10_000
        )
        checks_stop = asyncio.Event()
        tasks = [
            asyncio.create_task(checks.maintain(checks_stop)),
            asyncio.create_task(reconciling.check_payments(checks, checks_stop)),
            asyncio.create_task(DeadLetterRetries(group).run(checks_stop)),
        ]
        try:
            await group.run(stop)
        finally:
            checks_stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await checks.release_all()


# Every worker `eventhunting worker NAME` can run; any number of processes may run each.
WORKERS: dict[str, Worker] = {
    "archiver": archiver,
    "projector": projector,
    "expirer": expirer.run,
    "reconciler": reconciler,
    "mailer": mailer.run,
}

# What a worker needs beyond the common settings, checked before any worker starts: a
# `SettingsError` naming the variable stops `eventhunting worker` with one line (exit 2).
SETTINGS_CHECKS: dict[str, Callable[[Settings], object]] = {"mailer": mailer.check_settings}


async def run_named_workers(
    settings: Settings, names: Sequence[str], *, metrics_address: tuple[str, int] | None = None
) -> int:
    """Run the named workers side by side; stop them all on SIGTERM/SIGINT or if one fails.

    With `metrics_address`, the process serves its Prometheus metrics (consumer lag, pending
    and dead-lettered entries, expiry outcomes) at http://host:port/metrics.
    """
    if metrics_address is not None:
        host, port = metrics_address
        start_http_server(port, addr=host)
        logger.info("worker metrics served", extra={"url": f"http://{host}:{port}/metrics"})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    services = await build_services(settings)
    logger.info("workers starting", extra={"workers": list(names)})
    tasks = [
        asyncio.create_task(WORKERS[name](services, stop), name=f"worker:{name}")
        for name in dict.fromkeys(names)
    ]
    exit_code = 0
    try:
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task in tasks and task.exception() is not None:
                logger.error(
                    "worker failed", exc_info=task.exception(), extra={"worker": task.get_name()}
                )
                exit_code = 1
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await services.close()
    logger.info("workers stopped", extra={"workers": list(names), "exit_code": exit_code})
    return exit_code
