"""A Lua script whose concurrent calls share pipelined round trips (auto-pipelining)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from hiredis import pack_command
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from eventhunting.store.redis_client import (
    CLUSTER_PATIENCE_SECONDS,
    CLUSTER_RETRY_PAUSE_SECONDS,
    NOT_RUN,
    RedisClient,
    torn_down,
)

MAX_BATCH = 256
"""Calls per round trip: enough to amortise the client's per-round-trip cost, small enough
that one batch never holds Redis (single-threaded) for long."""

UNKNOWN_OUTCOME = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)
"""Errors after which a call may or may not have run (the connection broke after sending)."""


class Call(NamedTuple):
    """One EVALSHA (command and arguments), the future its caller awaits, and whether it may
    be sent again after an unknown outcome (its script refuses to run twice)."""

    command: tuple[EncodableT, ...]
    future: asyncio.Future[Any]
    repeatable: bool


class BatchedScript:
    """EVALSHA of one script for concurrent callers, many calls per round trip.

    A call made while no batch is in flight goes out on the next turn of the event loop,
    together with every other call of that turn, so a lone call waits for no timer. Calls
    made while a batch is in flight queue and go together in the next one, up to
    `max_batch` per round trip. One batch is one pipeline (no MULTI) on one connection:
    its calls run in queue order, each atomic on its own and independent of the others,
    and each caller gets its own reply or its own exception. Connection errors (after the
    client's own retries) fail every call of that batch and no later one. When the server
    has forgotten the script (restart, SCRIPT FLUSH) it is loaded again and the calls it
    refused are sent once more: a NOSCRIPT call did not run.

    On a Redis Cluster a batch is one pipeline per node (redis-py's ClusterPipeline groups
    the calls by the node of their slot and follows MOVED and ASK one call at a time). A
    call the cluster refused before running it (MOVED, ASK, TRYAGAIN while its slot
    migrates, CLUSTERDOWN during a failover, NOSCRIPT on a new master) is sent again until
    `CLUSTER_PATIENCE_SECONDS` pass. A call whose outcome is unknown (the connection broke
    after it was sent, its master died) is sent again only when its caller said it is
    `repeatable`: the script itself refuses a second run (the append's expected version or
    idempotency id), so the repeat answers "already done" instead of doing it twice.
    """

    def __init__(self, redis: RedisClient, script: str, *, max_batch: int = MAX_BATCH) -> None:
        self.redis = redis
        self.script = script
        self.sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
        self.max_batch = max_batch
        self.queue: deque[Call] = deque()
        self.sender: asyncio.Task[None] | None = None

    async def __call__(
        self,
        keys: Sequence[EncodableT],
        args: Sequence[EncodableT],
        *,
        repeatable: bool = False,
    ) -> Any:
        """The script's reply; `repeatable` when running it twice does no harm (see above)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        self.queue.append(Call(command, future, repeatable))
        if self.sender is None:
            self.sender = asyncio.create_task(self.send_batches())
        return await future

    async def send_batches(self) -> None:
        """Send queued calls batch after batch until the queue is empty, then stop."""
        try:
            while self.queue:
                batch = self.next_batch()
                if not batch:
                    continue
                try:
                    replies = await self.run(batch)
                except asyncio.CancelledError:
                    for call in batch:
                        call.future.cancel()
                    raise
                except Exception as error:  # every caller of the batch gets it
                    replies = [error] * len(batch)
                for (_, future, _), reply in zip(batch, replies, strict=True):
                    if future.done():  # the caller was cancelled
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self.sender = None
            # Only when this task itself is cancelled (its loop shutting down) are calls left.
            while self.queue:
                self.queue.popleft().future.cancel()

    def next_batch(self) -> list[Call]:
        """Up to `max_batch` queued calls whose callers still wait, oldest first."""
        batch: list[Call] = []
        queue = self.queue
        while queue and len(batch) < self.max_batch:
            call = queue.popleft()
            if not call.future.done():
                batch.append(call)
        return batch

    async def run(self, batch: Sequence[Call]) -> list[Any]:
        """Replies to the calls in order; a call the server refused gets its exception."""
        if isinstance(self.redis, RedisCluster):
            return await self.run_on_cluster(self.redis, batch)
        # hiredis packs in C what redis-py's asyncio connection packs in Python (~10x faster).
        commands = [cast(bytes, pack_command(cast(Any, call.command))) for call in batch]
        replies = await self.pipelined(commands)
        refused = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if refused:
            await self.redis.script_load(self.script)
            again = await self.pipelined([commands[index] for index in refused])
            for index, reply in zip(refused, again, strict=True):
                replies[index] = reply
        return replies

    async def run_on_cluster(self, cluster: RedisCluster, batch: Sequence[Call]) -> list[Any]:
        """One pipeline per node; calls refused before running are sent again (see above)."""
        replies: list[Any] = [None] * len(batch)
        todo = list(range(len(batch)))
        deadline = time.monotonic() + CLUSTER_PATIENCE_SECONDS
        while True:
            pipe = cluster.pipeline(transaction=False)
            for index in todo:
                pipe.execute_command(*batch[index].command)
            try:
                answers: list[Any] = await pipe.execute(raise_on_error=False)
            except NOT_RUN + UNKNOWN_OUTCOME as error:  # the whole pipeline failed
                answers = [error] * len(todo)
            except AttributeError as error:
                answers = [torn_down(error)] * len(todo)
            for index, answer in zip(todo, answers, strict=True):
                replies[index] = answer
            if any(isinstance(replies[index], NoScriptError) for index in todo):
                await cluster.script_load(self.script)  # on every master
            todo = [
                index
                for index in todo
                if isinstance(replies[index], NOT_RUN)
                or (batch[index].repeatable and isinstance(replies[index], UNKNOWN_OUTCOME))
            ]
            if not todo or time.monotonic() > deadline:
                return replies
            if not all(isinstance(replies[index], NoScriptError) for index in todo):
                await asyncio.sleep(CLUSTER_RETRY_PAUSE_SECONDS)

    async def pipelined(self, commands: Sequence[bytes]) -> list[Any]:
        """Send packed commands in one write on one pooled connection and read every reply.

        What redis-py's Pipeline does, minus its per-command packing and bookkeeping: the
        commands come packed by hiredis, and the client's retry policy applies as it does
        to a pipeline (reconnect, send again).
        """
        assert not isinstance(self.redis, RedisCluster)
        pool = self.redis.connection_pool
        connection: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        payload = b"".join(commands)

        async def exchange() -> list[Any]:
            await connection.send_packed_command(payload)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:
                    replies.append(error)
            return replies

        async def disconnect(error: Exception) -> None:
            await connection.disconnect(error=error)

        try:
            replies: list[Any] = await connection.retry.call_with_retry(exchange, disconnect)
            return replies
        finally:
            await pool.release(connection)
