"""An append can require another stream of its partition to still be at the version it read."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore, StreamVersion
from eventhunting.store.errors import GuardRejected
from tests.support.store_events import BasketClosed, ItemAdded, store_test_registry

PARTITIONS = 2


@pytest.fixture
def store(redis_client: aioredis.Redis) -> EventStore:
    return EventStore(redis_client, PARTITIONS, event_registry=store_test_registry)


def basket() -> str:
    return f"basket-{keys.new_id_in_partition(0, PARTITIONS)}"


async def test_an_append_passes_while_the_other_stream_is_at_the_version_read(
    store: EventStore,
) -> None:
    price_list, order = basket(), basket()
    await store.append(
        AppendRequest(partition=0, stream=price_list, events=[ItemAdded(sku="a", quantity=1)])
    )
    result = await store.append(
        AppendRequest(
            partition=0,
            stream=order,
            events=[ItemAdded(sku="a", quantity=2)],
            stream_versions=[StreamVersion(price_list, 1, code="prices_changed")],
        )
    )
    assert result.version == 1


async def test_an_append_writes_nothing_when_the_other_stream_moved_on(
    store: EventStore, redis_client: aioredis.Redis
) -> None:
    price_list, order = basket(), basket()
    for sku in ("a", "b"):
        await store.append(
            AppendRequest(partition=0, stream=price_list, events=[ItemAdded(sku=sku, quantity=1)])
        )
    log_length = await redis_client.xlen(keys.log_key(0))
    with pytest.raises(GuardRejected) as rejected:
        await store.append(
            AppendRequest(
                partition=0,
                stream=order,
                events=[BasketClosed()],
                stream_versions=[StreamVersion(price_list, 1, code="prices_changed")],
            )
        )
    assert (rejected.value.code, rejected.value.name) == ("prices_changed", price_list)
    assert await store.read_stream(0, order) == []
    assert await redis_client.xlen(keys.log_key(0)) == log_length


async def test_a_missing_stream_is_at_version_zero(store: EventStore) -> None:
    order = basket()
    result = await store.append(
        AppendRequest(
            partition=0,
            stream=order,
            events=[BasketClosed()],
            stream_versions=[StreamVersion(basket(), 0, code="prices_changed")],
        )
    )
    assert result.version == 1
