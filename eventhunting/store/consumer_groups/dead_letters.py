"""Dead letters: log entries a consumer group gave up on, kept with the error, under the lease."""

from __future__ import annotations

import logging
import time
import traceback
from importlib import resources
from typing import Any

from eventhunting.store import keys
from eventhunting.store.consumer_groups.entries import LogEntry
from eventhunting.store.consumer_groups.metrics import DEAD_LETTERED
from eventhunting.store.consumer_groups.ownership import Lease, LeaseLost
from eventhunting.store.redis_client import RedisClient

logger = logging.getLogger("eventhunting.store.consumer_groups")

DEAD_LETTER_SCRIPT = resources.files(__package__).joinpath("fenced_dead_letter.lua").read_text()

# The error text kept with a dead letter is cut to its last this many characters.
ERROR_TEXT_LIMIT = 4_000


class DeadLetters:
    """Moves entries of `group` to `{p<k>}:<group>:dead` (copy and ack in one script)."""

    def __init__(self, redis: RedisClient, group: str) -> None:
        self.group = group
        self.script = redis.register_script(DEAD_LETTER_SCRIPT)

    async def bury(
        self, lease: Lease, entry: LogEntry, failures: int, error: BaseException
    ) -> None:
        """Give `entry` up after `failures` failed attempts; `LeaseLost` if the lease is gone."""
        fields: dict[str, Any] = {
            "s": entry.stream,
            "v": entry.version,
            "e": entry.record,
            "position": entry.position,
            "group": self.group,
            "consumer": lease.consumer,
            "deliveries": failures,
            "error": "".join(traceback.format_exception(error))[-ERROR_TEXT_LIMIT:],
            "failed_at_ms": int(time.time() * 1000),
        }
        if entry.effects is not None:
            fields["x"] = entry.effects
        flattened: list[Any] = [item for pair in fields.items() for item in pair]
        reply = await self.script(
            keys=[
                keys.lease_key(entry.partition, self.group),
                keys.log_key(entry.partition),
                keys.dead_letter_key(entry.partition, self.group),
            ],
            args=[lease.value, self.group, entry.position, *flattened],
        )
        if reply == -1:
            raise LeaseLost(entry.partition)
        DEAD_LETTERED.labels(self.group).inc()
        logger.error(
            "entry dead-lettered",
            extra={
                "group": self.group,
                "partition": entry.partition,
                "position": entry.position,
                "stream": entry.stream,
                "deliveries": failures,
            },
        )
