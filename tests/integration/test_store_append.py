"""EventStore.append and reads against a real Redis: versions, guards, idempotency, claims."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from eventhunting.domain.errors import Conflict
from eventhunting.store import keys
from eventhunting.store.append import (
    AppendRequest,
    Claim,
    CounterChange,
    CounterSet,
    EventStore,
    Numbering,
    ScheduleChange,
)
from eventhunting.store.envelope import EventMeta
from eventhunting.store.errors import ConcurrencyError, GuardRejected
from tests.support.store_events import (
    BasketClosed,
    ItemAdded,
    ItemAddedV1,
    ReceiptIssued,
    old_registry,
    store_test_registry,
)

PARTITIONS = 4


def fixed_clock() -> datetime:
    return datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


@pytest.fixture
def store(store_redis: aioredis.Redis) -> EventStore:
    return EventStore(
        store_redis, PARTITIONS, clock=fixed_clock, event_registry=store_test_registry
    )


def basket(partition: int = 1) -> str:
    return f"basket-{keys.new_id_in_partition(partition, PARTITIONS)}"


def item(sku: str = "a", quantity: int = 1) -> ItemAdded:
    return ItemAdded(sku=sku, quantity=quantity)


def inventory(name: str, quantity: int, code: str = "sold_out") -> CounterChange:
    return CounterChange(
        name,
        {"held": quantity},
        sum_fields=("held", "sold"),
        ceiling_field="capacity",
        code=code,
    )


async def test_append_writes_events_and_read_stream_folds_them_back(store: EventStore) -> None:
    stream = basket()
    meta = EventMeta(command_id="c1", correlation_id="r1", actor="account-1")
    result = await store.append(
        AppendRequest(partition=1, stream=stream, events=[item("a"), item("b", 2)], meta=meta)
    )
    assert result.version == 2
    assert [event.version for event in result.events] == [1, 2]
    assert not result.duplicate
    read = await store.read_stream(stream)
    assert [event.data for event in read] == [item("a"), item("b", 2)]
    assert [event.event_id for event in read] == [event.event_id for event in result.events]
    assert read[0].meta == meta
    assert read[0].type == "ItemAdded"
    assert read[0].occurred_at == fixed_clock()


async def test_read_stream_accepts_an_explicit_partition(store: EventStore) -> None:
    stream = basket(2)
    await store.append(AppendRequest(partition=2, stream=stream, events=[item()]))
    assert len(await store.read_stream(2, stream)) == 1
    assert await store.read_stream(basket(2)) == []


async def test_append_at_the_wrong_expected_version_raises_with_the_actual_version(
    store: EventStore,
) -> None:
    stream = basket()
    await store.append(
        AppendRequest(partition=1, stream=stream, events=[item()], expected_version=0)
    )
    with pytest.raises(ConcurrencyError) as raised:
        await store.append(
            AppendRequest(partition=1, stream=stream, events=[item()], expected_version=0)
        )
    assert raised.value.actual_version == 1
    assert len(await store.read_stream(stream)) == 1


async def test_only_one_of_many_concurrent_appenders_at_the_same_version_succeeds(
    store: EventStore,
) -> None:
    stream = basket()
    await store.append(AppendRequest(partition=1, stream=stream, events=[item()]))

    async def attempt(index: int) -> bool:
        try:
            await store.append(
                AppendRequest(
                    partition=1, stream=stream, events=[item(str(index))], expected_version=1
                )
            )
        except ConcurrencyError:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(index) for index in range(50)))
    assert outcomes.count(True) == 1
    assert len(await store.read_stream(stream)) == 2
    assert len(await store.read_log(1)) == 2


async def test_a_guard_that_would_exceed_capacity_appends_nothing(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    await store.append(
        AppendRequest(
            partition=1,
            stream=basket(),
            events=[item()],
            counters=[
                CounterSet("inventory:t1", {"capacity": 5, "held": 0, "sold": 0}),
                CounterSet("inventory:t2", {"capacity": 5, "held": 0, "sold": 0}),
            ],
        )
    )
    stream = basket()
    with pytest.raises(GuardRejected) as raised:
        await store.append(
            AppendRequest(
                partition=1,
                stream=stream,
                events=[item("t1", 3), item("t2", 6)],
                counters=[inventory("inventory:t1", 3), inventory("inventory:t2", 6)],
                idempotency_id="order-cmd",
            )
        )
    assert (raised.value.code, raised.value.name) == ("sold_out", "inventory:t2")
    assert isinstance(raised.value, Conflict)
    counters = await store.read_counters(1, ["inventory:t1", "inventory:t2"])
    assert counters["inventory:t1"] == {"capacity": 5, "held": 0, "sold": 0}
    assert counters["inventory:t2"] == {"capacity": 5, "held": 0, "sold": 0}
    assert await store.read_stream(stream) == []
    assert len(await store.read_log(1)) == 1
    assert not await store_redis.exists(keys.idempotency_key(1, "order-cmd"))


async def test_counter_changes_on_the_same_counter_are_checked_together(store: EventStore) -> None:
    await store.append(
        AppendRequest(
            partition=1,
            stream=basket(),
            events=[item()],
            counters=[CounterSet("inventory:t1", {"capacity": 5, "held": 0, "sold": 0})],
        )
    )
    with pytest.raises(GuardRejected):
        await store.append(
            AppendRequest(
                partition=1,
                stream=basket(),
                events=[item()],
                counters=[inventory("inventory:t1", 3), inventory("inventory:t1", 3)],
            )
        )
    await store.append(
        AppendRequest(
            partition=1,
            stream=basket(),
            events=[item()],
            counters=[inventory("inventory:t1", 3), inventory("inventory:t1", 2)],
        )
    )
    assert (await store.read_counters(1, ["inventory:t1"]))["inventory:t1"]["held"] == 5


async def test_a_counter_field_may_not_go_below_zero(store: EventStore) -> None:
    with pytest.raises(GuardRejected) as raised:
        await store.append(
            AppendRequest(
                partition=1,
                stream=basket(),
                events=[item()],
                counters=[CounterChange("buyer:1", {"tickets": -1}, code="nothing_to_release")],
            )
        )
    assert raised.value.code == "nothing_to_release"


async def test_a_fixed_ceiling_limits_the_sum_of_fields(store: EventStore) -> None:
    limit = CounterChange(
        "buyer:1", {"tickets": 4}, sum_fields=("tickets",), ceiling=4, code="limit"
    )
    await store.append(
        AppendRequest(partition=1, stream=basket(), events=[item()], counters=[limit])
    )
    with pytest.raises(GuardRejected):
        await store.append(
            AppendRequest(
                partition=1,
                stream=basket(),
                events=[item()],
                counters=[
                    CounterChange(
                        "buyer:1", {"tickets": 1}, sum_fields=("tickets",), ceiling=4, code="limit"
                    )
                ],
            )
        )
    assert await store.read_counters(1, ["buyer:1"]) == {"buyer:1": {"tickets": 4}}


async def test_counter_set_initialises_only_fields_that_do_not_exist(store: EventStore) -> None:
    for capacity in (5, 9):
        await store.append(
            AppendRequest(
                partition=1,
                stream=basket(),
                events=[item()],
                counters=[CounterSet("inventory:t1", {"capacity": capacity, "held": 0})],
            )
        )
    assert await store.read_counters(1, ["inventory:t1", "missing"]) == {
        "inventory:t1": {"capacity": 5, "held": 0},
        "missing": {},
    }


async def test_a_repeated_idempotency_id_appends_once_and_returns_the_first_result(
    store: EventStore,
) -> None:
    stream = basket()
    request = AppendRequest(
        partition=1,
        stream=stream,
        events=[item("a"), BasketClosed(reason="done")],
        idempotency_id="key-1",
        fingerprint="sha-of-body",
    )
    first = await store.append(request)
    again = await store.append(request)
    other_body = await store.append(
        AppendRequest(
            partition=1, stream=stream, events=[item("z")], idempotency_id="key-1", fingerprint="x"
        )
    )
    assert not first.duplicate
    assert again.duplicate
    assert other_body.duplicate
    assert again.fingerprint == other_body.fingerprint == "sha-of-body"
    assert again.version == first.version == 2
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert again.positions == first.positions
    assert [e.data for e in again.events] == [item("a"), BasketClosed(reason="done")]
    assert len(await store.read_stream(stream)) == 2


async def test_a_claim_held_by_another_owner_rejects_the_append(store: EventStore) -> None:
    claim = Claim("email:ann@example.com", "account-1", "email_taken")
    await store.append(AppendRequest(partition=1, stream=basket(), events=[item()], claims=[claim]))
    await store.append(AppendRequest(partition=1, stream=basket(), events=[item()], claims=[claim]))
    stream = basket()
    with pytest.raises(GuardRejected) as raised:
        await store.append(
            AppendRequest(
                partition=1,
                stream=stream,
                events=[item()],
                claims=[Claim("email:ann@example.com", "account-2", "email_taken")],
            )
        )
    assert raised.value.code == "email_taken"
    assert await store.read_claim(1, "email:ann@example.com") == "account-1"
    assert await store.read_stream(stream) == []


async def test_schedule_changes_add_and_remove_members(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    key = keys.schedule_key(1, "hold-expiry")
    await store.append(
        AppendRequest(
            partition=1,
            stream=basket(),
            events=[item()],
            schedules=[ScheduleChange("hold-expiry", "order-1", 1_740_830_400_000)],
        )
    )
    assert await store_redis.zscore(key, "order-1") == 1_740_830_400_000
    await store.append(
        AppendRequest(
            partition=1,
            stream=basket(),
            events=[item()],
            schedules=[ScheduleChange("hold-expiry", "order-1", None)],
        )
    )
    assert await store_redis.zcard(key) == 0


async def test_append_reloads_the_script_after_the_server_forgot_it(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    await store.append(AppendRequest(partition=1, stream=basket(), events=[item()]))
    await store_redis.script_flush()
    result = await store.append(AppendRequest(partition=1, stream=basket(), events=[item()]))
    assert result.version == 1


async def test_read_log_returns_the_partition_in_append_order_after_a_position(
    store: EventStore,
) -> None:
    first, second = basket(), basket()
    one = await store.append(AppendRequest(partition=1, stream=first, events=[item("1")]))
    await store.append(AppendRequest(partition=1, stream=second, events=[item("2"), item("3")]))
    log = await store.read_log(1)
    assert [(e.stream, e.version) for e in log] == [(first, 1), (second, 1), (second, 2)]
    assert all(e.partition == 1 and e.position for e in log)
    later = await store.read_log(1, after=one.positions[0], count=1)
    assert [(e.stream, e.version) for e in later] == [(second, 1)]


async def test_old_schema_events_are_upcast_on_read(store_redis: aioredis.Redis) -> None:
    stream = basket()
    old_store = EventStore(store_redis, PARTITIONS, event_registry=old_registry)
    await old_store.append(
        AppendRequest(partition=1, stream=stream, events=[ItemAddedV1(sku="a", count=3)])
    )
    store = EventStore(store_redis, PARTITIONS, event_registry=store_test_registry)
    (event,) = await store.read_stream(stream)
    assert event.data == ItemAdded(sku="a", quantity=3)
    assert event.schema == 2


async def test_an_append_without_events_is_refused(store: EventStore) -> None:
    with pytest.raises(ValueError, match="at least one event"):
        await store.append(AppendRequest(partition=1, stream=basket(), events=[]))


async def test_an_appends_result_holds_its_log_entries_as_stored_numbered_or_not(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    numbering = Numbering(
        name="receipts",
        field="issued",
        maximum=99,
        code="receipts_exhausted",
        number_fields=("sequence",),
        text_fields=("number",),
        text_prefix="R-",
        digits=4,
    )
    plain = await store.append(AppendRequest(partition=1, stream=basket(), events=[item()]))
    numbered = await store.append(
        AppendRequest(
            partition=1,
            stream=basket(),
            events=[item("b"), ReceiptIssued(note='é "quoted" R-0000')],
            counters=[CounterSet("stock", {"n": 3})],
            numbering=numbering,
        )
    )
    for result in (plain, numbered):
        entries = await store_redis.xrange(
            keys.log_key(1), result.positions[0], result.positions[-1]
        )
        assert [entry_id.decode() for entry_id, _ in entries] == list(result.positions)
        assert [fields[b"e"] for _, fields in entries] == list(result.records)
        assert [fields.get(b"x") for _, fields in entries][-1] == result.effects_record
    assert plain.effects_record is None
    assert b'"number":"R-0001"' in numbered.records[1]
