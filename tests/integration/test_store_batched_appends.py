"""Concurrent appends share pipelined round trips, yet each caller gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.retry import Retry

from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, CounterChange, CounterSet, EventStore
from eventhunting.store.errors import ConcurrencyError, GuardRejected
from tests.support.store_events import ItemAdded, store_test_registry

PARTITIONS = 4
PARTITION = 1


def basket() -> str:
    return f"basket-{keys.new_id_in_partition(PARTITION, PARTITIONS)}"


def add(stream: str, **options: object) -> AppendRequest:
    return AppendRequest(
        partition=PARTITION,
        stream=stream,
        events=[ItemAdded(sku="a", quantity=1)],
        **options,  # type: ignore[arg-type]
    )


def hold(stream: str, quantity: int) -> AppendRequest:
    return add(
        stream,
        counters=[
            CounterChange(
                "inventory:t1",
                {"held": quantity},
                sum_fields=("held",),
                ceiling_field="capacity",
                code="sold_out",
            )
        ],
    )


@pytest.fixture
def store(store_redis: aioredis.Redis) -> EventStore:
    return EventStore(store_redis, PARTITIONS, event_registry=store_test_registry)


async def test_concurrent_appends_with_mixed_outcomes_each_get_their_own(
    store: EventStore,
) -> None:
    await store.append(
        add(basket(), counters=[CounterSet("inventory:t1", {"capacity": 10, "held": 0})])
    )
    earlier = [await store.append(add(basket(), idempotency_id=f"cmd-{n}")) for n in range(5)]
    fresh = [basket() for _ in range(20)]
    requests = (
        [add(stream, expected_version=0) for stream in fresh]  # succeed
        + [add(basket(), expected_version=3) for _ in range(5)]  # version conflicts
        + [hold(basket(), 11) for _ in range(5)]  # over capacity
        + [add(basket(), idempotency_id=f"cmd-{n}") for n in range(5)]  # duplicates
    )
    outcomes = await asyncio.gather(
        *(store.append(request) for request in requests), return_exceptions=True
    )

    successes, conflicts, rejections, duplicates = (
        outcomes[0:20],
        outcomes[20:25],
        outcomes[25:30],
        outcomes[30:35],
    )
    assert [(result.stream, result.version) for result in successes] == [  # type: ignore[union-attr]
        (stream, 1) for stream in fresh
    ]
    assert all(isinstance(error, ConcurrencyError) for error in conflicts)
    assert {error.actual_version for error in conflicts} == {0}  # type: ignore[union-attr]
    assert all(isinstance(error, GuardRejected) for error in rejections)
    assert {error.code for error in rejections} == {"sold_out"}  # type: ignore[union-attr]
    assert [result.duplicate for result in duplicates] == [True] * 5  # type: ignore[union-attr]
    assert [result.events for result in duplicates] == [  # type: ignore[union-attr]
        result.events for result in earlier
    ]
    assert len(await store.read_log(PARTITION, count=1000)) == 1 + 5 + 20


async def test_concurrent_appends_share_one_connection(store_redis_url: str) -> None:
    client = aioredis.Redis.from_url(store_redis_url, client_name="batched-appends")
    store = EventStore(client, PARTITIONS, event_registry=store_test_registry)
    try:
        await asyncio.gather(*(store.append(add(basket())) for _ in range(100)))
        connections = [
            entry for entry in await client.client_list() if entry["name"] == "batched-appends"
        ]
        assert len(connections) == 1
    finally:
        await client.flushdb()
        await client.aclose()


async def test_concurrent_appends_to_one_stream_run_in_the_order_they_were_made(
    store: EventStore,
) -> None:
    stream = basket()
    results = await asyncio.gather(
        *(store.append(add(stream, expected_version=version)) for version in range(30))
    )
    assert [result.version for result in results] == list(range(1, 31))


async def test_an_append_that_fails_in_redis_does_not_affect_the_rest_of_its_batch(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    broken = basket()
    # A plain string where the aggregate stream should be: the script's XLEN fails.
    await store_redis.set(keys.stream_key(PARTITION, broken), "not a stream")
    streams = [basket() for _ in range(10)]
    outcomes = await asyncio.gather(
        *(store.append(add(stream)) for stream in [*streams[:5], broken, *streams[5:]]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[5], ResponseError)
    assert "WRONGTYPE" in str(outcomes[5])
    del outcomes[5]
    assert [result.stream for result in outcomes] == streams  # type: ignore[union-attr]
    assert [len(await store.read_stream(stream)) for stream in streams] == [1] * 10


async def test_appends_reload_the_script_after_script_flush(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    await store.append(add(basket()))
    await store_redis.script_flush()
    assert await store_redis.script_exists(store.append_script.sha) == [False]
    results = await asyncio.gather(*(store.append(add(basket())) for _ in range(20)))
    assert [result.version for result in results] == [1] * 20
    assert await store_redis.script_exists(store.append_script.sha) == [True]


async def test_a_caller_cancelled_before_its_batch_is_sent_writes_nothing(
    store: EventStore,
) -> None:
    kept, cancelled = basket(), basket()
    first = asyncio.create_task(store.append(add(kept)))
    second = asyncio.create_task(store.append(add(cancelled)))
    await asyncio.sleep(0)  # both are queued; the batch goes out on the next turn
    second.cancel()
    assert (await first).version == 1
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await store.read_stream(cancelled) == []


class CuttableProxy:
    """A TCP proxy in front of Redis that can cut its connections, to inject network failures.

    While `cut` is set, a connection that sends anything is closed without forwarding it,
    so the command never reaches Redis and the client sees the connection drop.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.cut = False
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        from_redis, to_redis = await asyncio.open_connection(*self.upstream)

        async def pump(
            source: asyncio.StreamReader, target: asyncio.StreamWriter, *, upstream: bool
        ) -> None:
            while data := await source.read(65536):
                if upstream and self.cut:
                    break
                target.write(data)
                await target.drain()
            to_client.close()
            to_redis.close()

        await asyncio.gather(
            pump(client, to_redis, upstream=True),
            pump(from_redis, to_client, upstream=False),
            return_exceptions=True,
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def proxy(store_redis_url: str) -> AsyncIterator[CuttableProxy]:
    host, port = store_redis_url.split("//", 1)[1].split("/", 1)[0].split(":")
    running = CuttableProxy(host, int(port))
    await running.start()
    try:
        yield running
    finally:
        await running.close()


async def test_a_connection_error_fails_the_callers_of_its_batch_and_the_next_append_works(
    proxy: CuttableProxy, store_redis: aioredis.Redis, store_redis_url: str
) -> None:
    assert proxy.server is not None
    port = proxy.server.sockets[0].getsockname()[1]
    database = store_redis_url.rsplit("/", 1)[1]
    # No retries: the client would otherwise reconnect and send the batch again.
    client = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{port}/{database}", retry=Retry(NoBackoff(), 0)
    )
    store = EventStore(client, PARTITIONS, event_registry=store_test_registry)
    try:
        await store.append(add(basket()))
        proxy.cut = True
        lost = [basket() for _ in range(10)]
        outcomes = await asyncio.gather(
            *(store.append(add(stream)) for stream in lost), return_exceptions=True
        )
        assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes)
        proxy.cut = False
        after = await store.append(add(basket()))
        assert after.version == 1
        assert len(await store.read_log(PARTITION)) == 2
        assert not any([await store_redis.exists(keys.stream_key(PARTITION, s)) for s in lost])
    finally:
        await client.aclose()
