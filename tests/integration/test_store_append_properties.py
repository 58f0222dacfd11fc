"""Property tests: random interleavings of concurrent guarded appends keep every invariant."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, CounterChange, CounterSet, EventStore
from eventhunting.store.errors import ConcurrencyError, GuardRejected
from tests.support.store_events import ItemAdded, store_test_registry

PARTITIONS = 2
PARTITION = 1
TICKET_TYPES = ("t1", "t2")
STREAMS = tuple(f"basket-{keys.new_id_in_partition(PARTITION, PARTITIONS)}" for _ in range(3))


@dataclass(frozen=True)
class Hold:
    """Hold (or, negative, release) quantities of ticket types on one basket stream."""

    stream: int
    quantities: tuple[tuple[str, int], ...]
    check_version: bool


holds = st.builds(
    Hold,
    stream=st.integers(0, len(STREAMS) - 1),
    quantities=st.lists(
        st.tuples(st.sampled_from(TICKET_TYPES), st.integers(-3, 4)), min_size=1, max_size=3
    ).map(tuple),
    check_version=st.booleans(),
)
rounds = st.lists(st.lists(holds, min_size=1, max_size=6), min_size=1, max_size=5)
capacities = st.fixed_dictionaries({name: st.integers(0, 8) for name in TICKET_TYPES})


def guard(ticket_type: str, quantity: int) -> CounterChange:
    return CounterChange(
        f"inventory:{ticket_type}",
        {"held": quantity},
        sum_fields=("held", "sold"),
        ceiling_field="capacity",
        code="sold_out",
    )


async def attempt(store: EventStore, versions: list[int], hold: Hold) -> Hold | None:
    try:
        await store.append(
            AppendRequest(
                partition=PARTITION,
                stream=STREAMS[hold.stream],
                events=[ItemAdded(sku=t, quantity=q) for t, q in hold.quantities],
                expected_version=versions[hold.stream] if hold.check_version else None,
                counters=[guard(t, q) for t, q in hold.quantities],
            )
        )
    except (GuardRejected, ConcurrencyError):
        return None
    return hold


async def check_interleavings(
    store_redis_url: str, capacity: dict[str, int], plan: list[list[Hold]]
) -> None:
    redis = aioredis.Redis.from_url(store_redis_url)
    try:
        await redis.flushdb()
        store = EventStore(redis, PARTITIONS, event_registry=store_test_registry)
        await store.append(
            AppendRequest(
                partition=PARTITION,
                stream=STREAMS[0],
                events=[ItemAdded(sku="setup", quantity=0)],
                counters=[
                    CounterSet(f"inventory:{t}", {"capacity": capacity[t], "held": 0, "sold": 0})
                    for t in TICKET_TYPES
                ],
            )
        )
        held = dict.fromkeys(TICKET_TYPES, 0)
        appended = 1
        for concurrent in plan:
            versions = [await store.stream_version(PARTITION, s) for s in STREAMS]

            outcomes = await asyncio.gather(*(attempt(store, versions, h) for h in concurrent))
            succeeded = [h for h in outcomes if h]
            for hold in succeeded:
                for ticket_type, quantity in hold.quantities:
                    held[ticket_type] += quantity
                appended += len(hold.quantities)
            for index in range(len(STREAMS)):
                checked = [h for h in succeeded if h.stream == index and h.check_version]
                assert len(checked) <= 1
            counters = await store.read_counters(
                PARTITION, [f"inventory:{t}" for t in TICKET_TYPES]
            )
            for ticket_type in TICKET_TYPES:
                counter = counters[f"inventory:{ticket_type}"]
                assert counter["held"] == held[ticket_type]
                assert 0 <= counter["held"] + counter["sold"] <= counter["capacity"]
            log = await store.read_log(PARTITION, count=10_000)
            assert len(log) == appended
            streams_total = 0
            for stream in STREAMS:
                events = await store.read_stream(PARTITION, stream)
                assert [e.version for e in events] == list(range(1, len(events) + 1))
                streams_total += len(events)
            assert streams_total == appended
    finally:
        await redis.flushdb()
        await redis.aclose()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(capacity=capacities, plan=rounds)
def test_concurrent_guarded_appends_never_exceed_capacity_nor_write_partially(
    store_redis_url: str, capacity: dict[str, int], plan: list[list[Hold]]
) -> None:
    asyncio.run(check_interleavings(store_redis_url, capacity, plan))
