"""Fenced partition leases: the processes of one group split the partitions, one owner each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
import zlib
from dataclasses import dataclass
from importlib import resources

from redis.exceptions import RedisError

from eventhunting.store import keys
from eventhunting.store.append import text
from eventhunting.store.redis_client import RedisClient

logger = logging.getLogger("eventhunting.store.consumer_groups")

TAKE_SCRIPT = resources.files(__package__).joinpath("lease_take.lua").read_text()
RELEASE_SCRIPT = resources.files(__package__).joinpath("lease_release.lua").read_text()


def unique_consumer_name() -> str:
    """A consumer name no other process shares: host, process id and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to process one partition for one group, until the lease passes on.

    `token` (the fencing token) is greater than the token of every earlier holder; a
    handler that commits elsewhere than Redis (MongoDB) stores it with its commit and
    refuses to commit below a token already stored there.
    """

    partition: int
    token: int
    consumer: str

    @property
    def value(self) -> str:
        return f"{self.token} {self.consumer}"


class LeaseLost(Exception):
    """The partition's lease passed to another consumer: this one must not commit."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"the lease of partition {partition} passed to another consumer")
        self.partition = partition


class PartitionOwnership:
    """Which partitions of `group` this consumer owns, kept up to date by `maintain`.

    Every live consumer of a group heartbeats in `group-members:<group>`; each takes free
    leases up to its fair share (partitions / live consumers, rounded up) and marks the
    ones beyond it as `surplus`, which its owner gives back between batches. A lease lives
    `lease_ms` and is renewed every third of that, so a dead consumer's partitions move to
    the others within `lease_ms` (plus one renewal round). A lease whose renewal has not
    succeeded for `lease_ms` (Redis unreachable) is dropped locally at once, before another
    consumer can take it.
    """

    def __init__(
        self,
        redis: RedisClient,
        group: str,
        consumer: str,
        partitions: int,
        *,
        lease_ms: int,
    ) -> None:
        self.redis = redis
        self.group = group
        self.consumer = consumer
        self.partitions = partitions
        self.lease_ms = lease_ms
        self.held: dict[int, Lease] = {}
        self.surplus: set[int] = set()
        self.renewed_at: dict[int, float] = {}
        self.take_script = redis.register_script(TAKE_SCRIPT)
        self.release_script = redis.register_script(RELEASE_SCRIPT)
        # Consumers start their search at different partitions so they rarely collide.
        self.first_choice = zlib.crc32(consumer.encode()) % partitions
        self.changed = asyncio.Event()

    @property
    def renew_interval(self) -> float:
        return self.lease_ms / 3000

    async def maintain(self, stop: asyncio.Event) -> None:
        """Heartbeat, renew, rebalance every third of the lease time until `stop` is set."""
        while not stop.is_set():
            try:
                await self.refresh()
            except RedisError as error:
                logger.warning(
                    "lease renewal failed", extra={"group": self.group, "error": repr(error)}
                )
            self.drop_expired()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.renew_interval)

    async def refresh(self) -> None:
        """One round: heartbeat, renew held leases, take or mark partitions for a fair share."""
        members = await self.heartbeat()
        share = math.ceil(self.partitions / max(members, 1))
        for partition in list(self.held):
            await self.take(partition)
        order = [(self.first_choice + step) % self.partitions for step in range(self.partitions)]
        for partition in order:
            if len(self.held) >= share:
                break
            if partition not in self.held:
                await self.take(partition)
        surplus = len(self.held) - share
        self.surplus = set(sorted(self.held, reverse=True)[:surplus]) if surplus > 0 else set()

    async def heartbeat(self) -> int:
        """Record this consumer as live; the number of live consumers of the group."""
        now_ms = int(time.time() * 1000)
        members_key = keys.group_members_key(self.group)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(members_key, {self.consumer: now_ms + self.lease_ms})
            pipe.zremrangebyscore(members_key, "-inf", now_ms)
            pipe.zcard(members_key)
            pipe.pexpire(members_key, self.lease_ms * 10)
            replies = await pipe.execute()
        return int(replies[2])

    async def take(self, partition: int) -> Lease | None:
        started = time.monotonic()
        reply = await self.take_script(
            keys=[keys.lease_key(partition, self.group), keys.fence_key(partition, self.group)],
            args=[self.consumer, self.lease_ms],
        )
        if reply is None:
            if self.held.pop(partition, None) is not None:
                logger.warning(
                    "partition lease lost", extra={"group": self.group, "partition": partition}
                )
                self.changed.set()
            return None
        lease = Lease(partition=partition, token=int(text(reply)), consumer=self.consumer)
        previous = self.held.get(partition)
        if previous != lease:
            logger.info(
                "partition lease taken",
                extra={"group": self.group, "partition": partition, "token": lease.token},
            )
            self.held[partition] = lease
            self.changed.set()
        self.renewed_at[partition] = started
        return lease

    def drop_expired(self) -> None:
        """Forget leases not renewed for a whole lease time: another consumer may hold them."""
        deadline = time.monotonic() - self.lease_ms / 1000
        for partition in [p for p in self.held if self.renewed_at.get(p, 0.0) < deadline]:
            logger.warning(
                "partition lease expired unrenewed",
                extra={"group": self.group, "partition": partition},
            )
            del self.held[partition]
            self.changed.set()

    def forget(self, partition: int) -> None:
        """Stop treating the partition as owned (a handler found its lease gone)."""
        if self.held.pop(partition, None) is not None:
            self.changed.set()

    async def release(self, partition: int) -> None:
        """Give a partition back (after finishing its batch) so another consumer takes it."""
        lease = self.held.pop(partition, None)
        self.surplus.discard(partition)
        if lease is None:
            return
        await self.release_script(keys=[keys.lease_key(partition, self.group)], args=[lease.value])
        logger.info("partition lease released", extra={"group": self.group, "partition": partition})

    async def release_all(self) -> None:
        """On a graceful stop: give every lease back and leave the group's members."""
        for partition in list(self.held):
            await self.release(partition)
        await self.redis.zrem(keys.group_members_key(self.group), self.consumer)
