"""Dead letters an admin asked to retry, handled again by their group's worker under its lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from importlib import resources
from typing import Any, Generic, TypeVar

from eventhunting.store import keys
from eventhunting.store.append import text
from eventhunting.store.consumer_groups import (
    ConsumerGroup,
    Lease,
    LeaseLost,
    is_outage,
    log_entry,
)
from eventhunting.store.consumer_groups.dead_letters import ERROR_TEXT_LIMIT
from eventhunting.store.consumer_groups.metrics import DEAD_LETTERED

logger = logging.getLogger("eventhunting.consumers.dead_letter_retries")

T = TypeVar("T")

SETTLE_SCRIPT = (
    resources.files("eventhunting.consumers").joinpath("dead_letter_retry_settle.lua").read_text()
)
# How often the retry streams of the owned partitions are looked at.
INTERVAL_SECONDS = 1.0


def retry_key(partition: int, group: str) -> str:
    """Dead letters of `group` in partition `k` waiting to be handled again (an admin asked)."""
    return f"{{p{partition}}}:{group}:retry"


def field_of(fields: dict[Any, Any], name: str) -> Any:
    return fields.get(name.encode(), fields.get(name))


class DeadLetterRetries(Generic[T]):
    """Hands the entries of `{p<k>}:<group>:retry` to the group's handler, for every
    partition this consumer holds the lease of, one at a time in the order asked.

    An admin's retry moves a dead letter there (`services/dead_letters.py`), so it is
    handled by a worker that has what the handler needs (the mailer's signing key, SMTP),
    under the partition's lease, beside the group's own entries. It is dropped from the
    retry stream after the handler returned (handled once; a crash in between hands it to
    the handler again, which is idempotent like for any entry). An error that is not an
    outage counts; after the group's `max_deliveries` the entry goes back to the dead
    letters with the new error.
    """

    def __init__(self, group: ConsumerGroup[T], *, interval_seconds: float = INTERVAL_SECONDS):
        self.group = group
        self.redis = group.redis
        self.interval_seconds = interval_seconds
        self.settle = group.redis.register_script(SETTLE_SCRIPT)
        self.failures: dict[tuple[int, str], int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("retry round failed", extra={"group": self.group.group})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_seconds)

    async def round(self) -> int:
        """Handle what is waiting in the owned partitions; the number of entries settled."""
        settled = 0
        for lease in list(self.group.ownership.held.values()):
            settled += await self.retry_partition(lease)
        return settled

    async def retry_partition(self, lease: Lease) -> int:
        partition, group = lease.partition, self.group.group
        waiting: Any = await self.redis.xrange(
            retry_key(partition, group), count=self.group.config.count
        )
        settled = 0
        for retry_id_raw, fields in waiting:
            retry_id = text(retry_id_raw)
            position = text(field_of(fields, "position"))
            entry = log_entry(partition, position, fields)
            try:
                await self.group.handler([self.group.decode(entry)], lease)
            except LeaseLost:
                return settled
            except Exception as error:
                if not await self.failed(lease, retry_id, fields, error):
                    return settled  # keep the order asked: the rest waits for this one
            else:
                self.failures.pop((partition, retry_id), None)
                if await self.finish(lease, retry_id, "done") == -1:
                    return settled
                logger.info(
                    "dead letter handled again",
                    extra={"group": group, "partition": partition, "position": position},
                )
            settled += 1
        return settled

    async def failed(
        self, lease: Lease, retry_id: str, fields: dict[Any, Any], error: Exception
    ) -> bool:
        """Count a failure; True when the entry went back to the dead letters."""
        key = (lease.partition, retry_id)
        if is_outage(error):
            return False
        failures = self.failures.get(key, 0) + 1
        self.failures[key] = failures
        logger.warning(
            "retried dead letter failed",
            extra={"group": self.group.group, "failures": failures, "error": repr(error)},
        )
        if failures < self.group.config.max_deliveries:
            return False
        kept = {
            name: field_of(fields, name)
            for name in ("s", "v", "e", "x", "position", "retried_by", "retried_at_ms")
            if field_of(fields, name) is not None
        }
        dead: dict[str, Any] = {
            **kept,
            "group": self.group.group,
            "consumer": lease.consumer,
            "deliveries": failures,
            "error": "".join(traceback.format_exception(error))[-ERROR_TEXT_LIMIT:],
            "failed_at_ms": int(time.time() * 1000),
        }
        flattened = [item for pair in dead.items() for item in pair]
        if await self.finish(lease, retry_id, "dead", *flattened) == 1:
            DEAD_LETTERED.labels(self.group.group).inc()
        self.failures.pop(key, None)
        return True

    async def finish(self, lease: Lease, retry_id: str, how: str, *fields: Any) -> int:
        partition, group = lease.partition, self.group.group
        result = await self.settle(
            keys=[
                keys.lease_key(partition, group),
                retry_key(partition, group),
                keys.dead_letter_key(partition, group),
            ],
            args=[lease.value, retry_id, how, *fields],
        )
        return int(result)
