"""A Lua script whose concurrent calls share pipelined round trips (auto-pipelining)."""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError
from redis.typing import EncodableT

MAX_BATCH = 256
"""Calls per round trip: enough to amortise the client's per-round-trip cost, small enough
that one batch never holds Redis (single-threaded) for long."""

Call = tuple[bytes, "asyncio.Future[Any]"]
"""A packed EVALSHA command and the future its caller awaits."""


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
    """

    def __init__(self, redis: aioredis.Redis, script: str, *, max_batch: int = MAX_BATCH) -> None:
        self.redis = redis
        self.script = script
        self.sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
        self.max_batch = max_batch
        self.queue: deque[Call] = deque()
        self.sender: asyncio.Task[None] | None = None

    async def __call__(self, keys: Sequence[EncodableT], args: Sequence[EncodableT]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # hiredis packs in C what redis-py's asyncio connection packs in Python (~10x faster).
        command: Any = ("EVALSHA", self.sha, len(keys), *keys, *args)  # stub: 1-tuple only
        self.queue.append((cast(bytes, pack_command(command)), future))
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
                    replies = await self.run([command for command, _ in batch])
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as error:  # every caller of the batch gets it
                    replies = [error] * len(batch)
                for (_, future), reply in zip(batch, replies, strict=True):
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
                _, future = self.queue.popleft()
                future.cancel()

    def next_batch(self) -> list[Call]:
        """Up to `max_batch` queued calls whose callers still wait, oldest first."""
        batch: list[Call] = []
        queue = self.queue
        while queue and len(batch) < self.max_batch:
            call = queue.popleft()
            if not call[1].done():
                batch.append(call)
        return batch

    async def run(self, commands: Sequence[bytes]) -> list[Any]:
        """Replies to `commands` in order; a command the server refused gets its exception."""
        replies = await self.pipelined(commands)
        refused = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if refused:
            await self.redis.script_load(self.script)
            again = await self.pipelined([commands[index] for index in refused])
            for index, reply in zip(refused, again, strict=True):
                replies[index] = reply
        return replies

    async def pipelined(self, commands: Sequence[bytes]) -> list[Any]:
        """Send packed commands in one write on one pooled connection and read every reply.

        What redis-py's Pipeline does, minus its per-command packing and bookkeeping: the
        commands come packed by hiredis, and the client's retry policy applies as it does
        to a pipeline (reconnect, send again).
        """
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
