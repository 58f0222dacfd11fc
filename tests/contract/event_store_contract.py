"""The event-store contract: what every implementation of EventStorePort must do, as tests."""

from __future__ import annotations

import abc
import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import ulid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventhunting.domain.errors import Conflict
from eventhunting.domain.events import DomainEvent, EventRegistry
from eventhunting.store import keys
from eventhunting.store.append import (
    AppendRequest,
    AppendResult,
    Claim,
    CounterChange,
    CounterSet,
    Numbering,
    ScheduleChange,
    StreamVersion,
)
from eventhunting.store.envelope import EventEnvelope, EventMeta
from eventhunting.store.errors import ConcurrencyError, GuardRejected
from eventhunting.store.port import EventStorePort
from tests.support.store_events import (
    BasketClosed,
    ItemAdded,
    ItemAddedV1,
    ReceiptIssued,
    old_registry,
    store_test_registry,
)

PARTITIONS = 4
PARTITION = 1
Clock = Callable[[], datetime]


def fixed_clock() -> datetime:
    return datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


class StoreFactory(abc.ABC):
    """Opens stores of one implementation on one test's storage, which they all share."""

    @abc.abstractmethod
    def open(
        self, *, event_registry: EventRegistry = store_test_registry, clock: Clock = fixed_clock
    ) -> EventStorePort:
        """A store of PARTITIONS partitions on this test's storage."""

    @abc.abstractmethod
    async def empty(self) -> None:
        """Forget everything stored (between the examples of a property test)."""

    @abc.abstractmethod
    async def schedule(self, partition: int, name: str) -> dict[str, float]:
        """The members and scores of a schedule, read behind the port (it has no such read:
        services read schedules from Redis themselves)."""


def basket(partition: int = PARTITION) -> str:
    return f"basket-{keys.new_id_in_partition(partition, PARTITIONS)}"


def item(sku: str = "a", quantity: int = 1) -> ItemAdded:
    return ItemAdded(sku=sku, quantity=quantity)


def add(stream: str, *events: DomainEvent, **options: object) -> AppendRequest:
    return AppendRequest(
        partition=PARTITION,
        stream=stream,
        events=list(events) or [item()],
        **options,  # type: ignore[arg-type]
    )


def hold(name: str, quantity: int, code: str = "sold_out") -> CounterChange:
    return CounterChange(
        name, {"held": quantity}, sum_fields=("held", "sold"), ceiling_field="capacity", code=code
    )


def inventory(name: str, capacity: int) -> CounterSet:
    return CounterSet(name, {"capacity": capacity, "held": 0, "sold": 0})


RECEIPTS = "receipts"


def receipt_numbering(maximum: int = 9999) -> Numbering:
    return Numbering(
        name=RECEIPTS,
        field="issued",
        maximum=maximum,
        code="receipts_exhausted",
        number_fields=("sequence",),
        text_fields=("number",),
        text_prefix="R-",
        digits=4,
    )


def numbered(stream: str, *events: DomainEvent, **options: object) -> AppendRequest:
    """An append whose ReceiptIssued takes the next receipt number."""
    return add(stream, *(events or [ReceiptIssued()]), numbering=receipt_numbering(), **options)


def receipts_of(events: list[EventEnvelope] | tuple[EventEnvelope, ...]) -> list[ReceiptIssued]:
    return [event.data for event in events if isinstance(event.data, ReceiptIssued)]


def as_numbers(position: str | None) -> tuple[int, int]:
    assert position is not None
    assert re.fullmatch(r"\d+-\d+", position), position
    milliseconds, sequence = position.split("-")
    return int(milliseconds), int(sequence)


# The property: rounds of concurrent holds and releases on a few baskets.

TICKET_TYPES = ("t1", "t2")
BASKETS = 3


@dataclass(frozen=True)
class Hold:
    """Hold (or, negative, release) quantities of ticket types on one of the baskets."""

    basket: int
    quantities: tuple[tuple[str, int], ...]
    check_version: bool


HOLDS = st.builds(
    Hold,
    basket=st.integers(0, BASKETS - 1),
    quantities=st.lists(
        st.tuples(st.sampled_from(TICKET_TYPES), st.integers(-3, 4)), min_size=1, max_size=3
    ).map(tuple),
    check_version=st.booleans(),
)
ROUNDS = st.lists(st.lists(HOLDS, min_size=1, max_size=6), min_size=1, max_size=5)
CAPACITIES = st.fixed_dictionaries({name: st.integers(0, 8) for name in TICKET_TYPES})


async def check_interleavings(
    store: EventStorePort, capacity: dict[str, int], plan: list[list[Hold]]
) -> None:
    streams = [basket() for _ in range(BASKETS)]
    setup = [inventory(f"inventory:{t}", capacity[t]) for t in TICKET_TYPES]
    await store.append(add(streams[0], item("setup", 0), counters=setup))
    held = dict.fromkeys(TICKET_TYPES, 0)
    appended = 1

    async def attempt(versions: list[int], hold_: Hold) -> Hold | None:
        try:
            await store.append(
                add(
                    streams[hold_.basket],
                    *(item(t, q) for t, q in hold_.quantities),
                    expected_version=versions[hold_.basket] if hold_.check_version else None,
                    counters=[hold(f"inventory:{t}", q) for t, q in hold_.quantities],
                )
            )
        except (GuardRejected, ConcurrencyError):
            return None
        return hold_

    for concurrent in plan:
        versions = [await store.stream_version(PARTITION, s) for s in streams]
        outcomes = await asyncio.gather(*(attempt(versions, h) for h in concurrent))
        succeeded = [h for h in outcomes if h]
        for done in succeeded:
            for ticket_type, quantity in done.quantities:
                held[ticket_type] += quantity
            appended += len(done.quantities)
        for index in range(BASKETS):
            assert len([h for h in succeeded if h.basket == index and h.check_version]) <= 1
        counters = await store.read_counters(PARTITION, [f"inventory:{t}" for t in TICKET_TYPES])
        for ticket_type in TICKET_TYPES:
            counter = counters[f"inventory:{ticket_type}"]
            assert counter["held"] == held[ticket_type]
            assert 0 <= counter["held"] + counter["sold"] <= counter["capacity"]
        log = await store.read_log(PARTITION, count=10_000)
        assert len(log) == appended
        in_streams = 0
        for stream in streams:
            events = await store.read_stream(PARTITION, stream)
            assert [event.version for event in events] == list(range(1, len(events) + 1))
            in_streams += len(events)
        assert in_streams == appended


class EventStoreContract:
    """Subclass it once per implementation, with a `factory` fixture giving a StoreFactory.

    The behaviours are those of append.lua and the Redis store's reads; the Redis subclass
    is the authority, and the in-memory store passes the same tests.
    """

    @pytest.fixture
    def store(self, factory: StoreFactory) -> EventStorePort:
        return factory.open()

    # Writing and reading back

    async def test_append_writes_events_that_read_stream_returns_in_version_order(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        meta = EventMeta(command_id="c1", correlation_id="r1", causation_id="e0", actor="a-1")
        result = await store.append(add(stream, item("a"), item("b", 2), meta=meta))
        assert (result.partition, result.stream, result.version) == (PARTITION, stream, 2)
        assert not result.duplicate
        assert [event.version for event in result.events] == [1, 2]
        read = await store.read_stream(stream)
        assert [event.data for event in read] == [item("a"), item("b", 2)]
        assert [event.version for event in read] == [1, 2]
        assert [event.event_id for event in read] == [event.event_id for event in result.events]
        assert all(event.meta == meta for event in read)
        assert [(event.type, event.schema) for event in read] == [("ItemAdded", 2)] * 2
        assert all(event.stream == stream and event.partition == PARTITION for event in read)
        assert all(event.position is None for event in read)

    async def test_occurred_at_is_the_clock_time_kept_to_the_millisecond(
        self, factory: StoreFactory
    ) -> None:
        store = factory.open(clock=lambda: datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC))
        stream = basket()
        (written,) = (await store.append(add(stream))).events
        (read,) = await store.read_stream(stream)
        assert read.occurred_at == written.occurred_at
        assert read.occurred_at == datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)

    async def test_event_ids_are_ulids_of_the_append_time_increasing_within_an_append(
        self, store: EventStorePort
    ) -> None:
        result = await store.append(add(basket(), *(item(str(n)) for n in range(5))))
        event_ids = [event.event_id for event in result.events]
        assert event_ids == sorted(event_ids)
        assert len(set(event_ids)) == 5
        occurred_at_ms = int(fixed_clock().timestamp() * 1000)
        assert {ulid.ULID.from_str(event_id).milliseconds for event_id in event_ids} == {
            occurred_at_ms
        }

    async def test_read_stream_accepts_an_explicit_partition(self, store: EventStorePort) -> None:
        stream = basket(2)
        await store.append(AppendRequest(partition=2, stream=stream, events=[item()]))
        assert len(await store.read_stream(2, stream)) == 1
        assert await store.read_stream(3, stream) == []
        assert await store.read_stream(basket(2)) == []

    async def test_read_stream_after_a_version_returns_only_the_later_events(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        await store.append(add(stream, item("1"), item("2"), item("3")))
        later = await store.read_stream(PARTITION, stream, after_version=1)
        assert [(event.version, event.data) for event in later] == [(2, item("2")), (3, item("3"))]
        assert await store.read_stream(stream, after_version=3) == []

    async def test_stream_version_counts_the_events_of_a_stream(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        assert await store.stream_version(PARTITION, stream) == 0
        await store.append(add(stream, item(), item()))
        await store.append(add(stream))
        assert await store.stream_version(PARTITION, stream) == 3

    async def test_old_schema_events_are_upcast_on_every_read(self, factory: StoreFactory) -> None:
        stream = basket()
        older_build = factory.open(event_registry=old_registry)
        await older_build.append(add(stream, ItemAddedV1(sku="a", count=3)))
        store = factory.open()
        for event in [*await store.read_stream(stream), *await store.read_log(PARTITION)]:
            assert event.data == ItemAdded(sku="a", quantity=3)
            assert (event.type, event.schema) == ("ItemAdded", 2)

    async def test_an_append_without_events_is_refused(self, store: EventStorePort) -> None:
        with pytest.raises(ValueError, match="at least one event"):
            await store.append(AppendRequest(partition=PARTITION, stream=basket(), events=[]))

    async def test_an_append_to_a_partition_the_store_does_not_have_is_refused(
        self, store: EventStorePort
    ) -> None:
        assert store.partitions == PARTITIONS
        with pytest.raises(ValueError, match="outside"):
            await store.append(
                AppendRequest(partition=PARTITIONS, stream=basket(), events=[item()])
            )

    # The partition log

    async def test_read_log_returns_the_partition_in_append_order_after_a_position(
        self, store: EventStorePort
    ) -> None:
        first, second = basket(), basket()
        one = await store.append(add(first, item("1")))
        two = await store.append(add(second, item("2"), item("3")))
        await store.append(AppendRequest(partition=2, stream=basket(2), events=[item("other")]))
        log = await store.read_log(PARTITION)
        assert [(e.stream, e.version, e.data) for e in log] == [
            (first, 1, item("1")),
            (second, 1, item("2")),
            (second, 2, item("3")),
        ]
        assert all(event.partition == PARTITION for event in log)
        assert [event.position for event in log] == [*one.positions, *two.positions]
        assert [event.event_id for event in log] == [
            event.event_id for event in (*one.events, *two.events)
        ]
        later = await store.read_log(PARTITION, after=one.positions[0], count=1)
        assert [(e.stream, e.version) for e in later] == [(second, 1)]
        assert await store.read_log(PARTITION, after=two.positions[-1]) == []

    async def test_log_positions_are_milliseconds_and_sequence_increasing_in_append_order(
        self, store: EventStorePort
    ) -> None:
        results = [await store.append(add(basket(), item(), item())) for _ in range(20)]
        positions = [as_numbers(p) for result in results for p in result.positions]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)

    async def test_read_log_returns_at_most_count_events(self, store: EventStorePort) -> None:
        for _ in range(5):
            await store.append(add(basket()))
        assert len(await store.read_log(PARTITION, count=3)) == 3
        assert len(await store.read_log(PARTITION, after="0-0")) == 5

    # Expected versions

    async def test_expected_version_zero_appends_only_to_a_new_stream(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        assert (await store.append(add(stream, expected_version=0))).version == 1
        with pytest.raises(ConcurrencyError) as raised:
            await store.append(add(stream, expected_version=0))
        assert raised.value.actual_version == 1
        assert isinstance(raised.value, Conflict)

    async def test_a_wrong_expected_version_raises_with_the_actual_one_and_writes_nothing(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        await store.append(add(stream, item(), item()))
        with pytest.raises(ConcurrencyError) as raised:
            await store.append(
                add(
                    stream,
                    expected_version=1,
                    idempotency_id="cmd-late",
                    counters=[CounterSet("inventory:t1", {"capacity": 5})],
                    claims=[Claim("email:ann@example.com", "account-1", "email_taken")],
                    schedules=[ScheduleChange("hold-expiry", "order-1", 1.0)],
                )
            )
        assert (raised.value.actual_version, raised.value.expected_version) == (2, 1)
        assert raised.value.stream == stream
        assert await store.stream_version(PARTITION, stream) == 2
        assert len(await store.read_log(PARTITION)) == 2
        assert await store.read_counters(PARTITION, ["inventory:t1"]) == {"inventory:t1": {}}
        assert await store.read_claim(PARTITION, "email:ann@example.com") is None
        assert await store.find_earlier(PARTITION, "cmd-late") is None

    async def test_the_expected_version_appends_after_exactly_that_many_events(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        await store.append(add(stream))
        result = await store.append(add(stream, item(), item(), expected_version=1))
        assert result.version == 3
        assert [event.version for event in result.events] == [2, 3]

    async def test_without_an_expected_version_an_append_goes_after_any_version(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        versions = [(await store.append(add(stream))).version for _ in range(3)]
        assert versions == [1, 2, 3]

    async def test_only_one_of_many_concurrent_appenders_at_the_same_version_succeeds(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        await store.append(add(stream))

        async def attempt(index: int) -> bool:
            try:
                await store.append(add(stream, item(str(index)), expected_version=1))
            except ConcurrencyError:
                return False
            return True

        outcomes = await asyncio.gather(*(attempt(index) for index in range(50)))
        assert outcomes.count(True) == 1
        assert await store.stream_version(PARTITION, stream) == 2
        assert len(await store.read_log(PARTITION)) == 2

    async def test_concurrent_appends_to_one_stream_run_in_the_order_they_were_made(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        results = await asyncio.gather(
            *(store.append(add(stream, expected_version=version)) for version in range(30))
        )
        assert [result.version for result in results] == list(range(1, 31))

    # Idempotency

    async def test_a_repeated_idempotency_id_appends_once_and_returns_the_first_result(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        request = add(
            stream,
            item("a"),
            BasketClosed(reason="done"),
            idempotency_id="key-1",
            fingerprint="sha-of-body",
        )
        first = await store.append(request)
        again = await store.append(request)
        other_body = await store.append(
            add(stream, item("z"), idempotency_id="key-1", fingerprint="x")
        )
        assert not first.duplicate
        assert again.duplicate
        assert other_body.duplicate
        assert again.fingerprint == other_body.fingerprint == "sha-of-body"
        assert again.version == first.version == 2
        assert again.events == first.events
        assert again.positions == first.positions
        assert [event.data for event in again.events] == [item("a"), BasketClosed(reason="done")]
        assert await store.stream_version(PARTITION, stream) == 2
        assert len(await store.read_log(PARTITION)) == 2

    async def test_a_repeated_idempotency_id_is_answered_before_any_check(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        first = await store.append(
            add(
                stream,
                idempotency_id="key-1",
                counters=[inventory("inventory:t1", 1), hold("inventory:t1", 1)],
            )
        )
        again = await store.append(
            add(
                basket(),
                idempotency_id="key-1",
                expected_version=5,
                counters=[hold("inventory:t1", 1)],
                stream_versions=[StreamVersion(stream, 0, code="changed")],
            )
        )
        assert again.duplicate
        assert (again.stream, again.events) == (stream, first.events)
        assert await store.read_counters(PARTITION, ["inventory:t1"]) == {
            "inventory:t1": {"capacity": 1, "held": 1, "sold": 0}
        }

    async def test_an_idempotency_id_is_kept_per_partition(self, store: EventStorePort) -> None:
        await store.append(add(basket(), idempotency_id="key-1"))
        other = await store.append(
            AppendRequest(partition=2, stream=basket(2), events=[item()], idempotency_id="key-1")
        )
        assert not other.duplicate

    async def test_find_earlier_returns_what_an_idempotent_append_wrote(
        self, store: EventStorePort
    ) -> None:
        first = await store.append(
            add(basket(), item("a"), item("b"), idempotency_id="key-1", fingerprint="f")
        )
        assert await store.find_earlier(PARTITION, "key-2") is None
        assert await store.find_earlier(2, "key-1") is None
        earlier = await store.find_earlier(PARTITION, "key-1")
        assert earlier is not None
        assert (earlier.duplicate, earlier.fingerprint, earlier.version) == (True, "f", 2)
        assert earlier.events == first.events

    async def test_find_earlier_returns_the_first_events_after_the_stream_moved_on(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        await store.append(add(stream, item("before")))
        first = await store.append(add(stream, item("a"), item("b"), idempotency_id="key-1"))
        await store.append(add(stream, item("after")))
        earlier = await store.find_earlier(PARTITION, "key-1")
        assert earlier == AppendResult(
            partition=PARTITION,
            stream=stream,
            version=3,
            events=first.events,
            duplicate=True,
            fingerprint=None,
        )
        assert [event.position for event in earlier.events] == list(first.positions)

    async def test_a_refused_append_leaves_its_idempotency_id_unused(
        self, store: EventStorePort
    ) -> None:
        await store.append(add(basket(), counters=[inventory("inventory:t1", 1)]))
        with pytest.raises(GuardRejected):
            await store.append(
                add(basket(), idempotency_id="key-1", counters=[hold("inventory:t1", 2)])
            )
        assert await store.find_earlier(PARTITION, "key-1") is None
        retried = await store.append(
            add(basket(), idempotency_id="key-1", counters=[hold("inventory:t1", 1)])
        )
        assert not retried.duplicate

    # Claims

    async def test_a_claim_is_taken_by_the_append_and_may_be_taken_again_by_its_owner(
        self, store: EventStorePort
    ) -> None:
        claim = Claim("email:ann@example.com", "account-1", "email_taken")
        assert await store.read_claim(PARTITION, claim.name) is None
        await store.append(add(basket(), claims=[claim]))
        await store.append(add(basket(), claims=[claim]))
        assert await store.read_claim(PARTITION, claim.name) == "account-1"
        assert await store.read_claim(2, claim.name) is None

    async def test_a_claim_held_by_another_owner_rejects_the_append_and_writes_nothing(
        self, store: EventStorePort
    ) -> None:
        await store.append(
            add(basket(), claims=[Claim("email:ann@example.com", "account-1", "email_taken")])
        )
        stream = basket()
        with pytest.raises(GuardRejected) as raised:
            await store.append(
                add(
                    stream,
                    claims=[
                        Claim("email:bob@example.com", "account-2", "email_taken"),
                        Claim("email:ann@example.com", "account-2", "email_taken"),
                    ],
                )
            )
        assert (raised.value.code, raised.value.name) == ("email_taken", "email:ann@example.com")
        assert await store.read_claim(PARTITION, "email:ann@example.com") == "account-1"
        assert await store.read_claim(PARTITION, "email:bob@example.com") is None
        assert await store.read_stream(stream) == []

    # Counters

    async def test_read_counters_reads_a_missing_counter_as_empty(
        self, store: EventStorePort
    ) -> None:
        await store.append(add(basket(), counters=[inventory("inventory:t1", 5)]))
        assert await store.read_counters(PARTITION, ["inventory:t1", "missing"]) == {
            "inventory:t1": {"capacity": 5, "held": 0, "sold": 0},
            "missing": {},
        }
        assert await store.read_counters(2, ["inventory:t1"]) == {"inventory:t1": {}}

    async def test_counter_set_initialises_only_fields_that_do_not_exist(
        self, store: EventStorePort
    ) -> None:
        for capacity in (5, 9):
            await store.append(
                add(basket(), counters=[CounterSet("inventory:t1", {"capacity": capacity})])
            )
        await store.append(
            add(basket(), counters=[CounterSet("inventory:t1", {"capacity": 7, "held": 0})])
        )
        assert await store.read_counters(PARTITION, ["inventory:t1"]) == {
            "inventory:t1": {"capacity": 5, "held": 0}
        }

    async def test_counter_sets_apply_before_the_changes_of_the_same_append(
        self, store: EventStorePort
    ) -> None:
        await store.append(
            add(basket(), counters=[hold("inventory:t1", 2), inventory("inventory:t1", 5)])
        )
        assert await store.read_counters(PARTITION, ["inventory:t1"]) == {
            "inventory:t1": {"capacity": 5, "held": 2, "sold": 0}
        }

    async def test_a_change_beyond_the_ceiling_field_writes_nothing_at_all(
        self, store: EventStorePort
    ) -> None:
        await store.append(
            add(basket(), counters=[inventory("inventory:t1", 5), inventory("inventory:t2", 5)])
        )
        stream = basket()
        with pytest.raises(GuardRejected) as raised:
            await store.append(
                add(
                    stream,
                    item("t1", 3),
                    item("t2", 6),
                    counters=[hold("inventory:t1", 3), hold("inventory:t2", 6)],
                    claims=[Claim("email:ann@example.com", "account-1", "email_taken")],
                    schedules=[ScheduleChange("hold-expiry", "order-1", 1.0)],
                )
            )
        assert (raised.value.code, raised.value.name) == ("sold_out", "inventory:t2")
        assert isinstance(raised.value, Conflict)
        assert await store.read_counters(PARTITION, ["inventory:t1", "inventory:t2"]) == {
            "inventory:t1": {"capacity": 5, "held": 0, "sold": 0},
            "inventory:t2": {"capacity": 5, "held": 0, "sold": 0},
        }
        assert await store.read_stream(stream) == []
        assert len(await store.read_log(PARTITION)) == 1
        assert await store.read_claim(PARTITION, "email:ann@example.com") is None

    async def test_the_sum_may_reach_the_ceiling_field_but_not_pass_it(
        self, store: EventStorePort
    ) -> None:
        await store.append(
            add(basket(), counters=[CounterSet("inventory:t1", {"capacity": 5, "sold": 2})])
        )
        await store.append(add(basket(), counters=[hold("inventory:t1", 3)]))
        with pytest.raises(GuardRejected):
            await store.append(add(basket(), counters=[hold("inventory:t1", 1)]))
        assert await store.read_counters(PARTITION, ["inventory:t1"]) == {
            "inventory:t1": {"capacity": 5, "held": 3, "sold": 2}
        }

    async def test_changes_of_one_counter_in_one_append_are_checked_cumulatively(
        self, store: EventStorePort
    ) -> None:
        await store.append(add(basket(), counters=[inventory("inventory:t1", 5)]))
        with pytest.raises(GuardRejected):
            await store.append(
                add(basket(), counters=[hold("inventory:t1", 3), hold("inventory:t1", 3)])
            )
        await store.append(
            add(basket(), counters=[hold("inventory:t1", 3), hold("inventory:t1", 2)])
        )
        counters = await store.read_counters(PARTITION, ["inventory:t1"])
        assert counters["inventory:t1"]["held"] == 5

    async def test_a_change_moving_between_fields_keeps_the_sum_within_the_ceiling(
        self, store: EventStorePort
    ) -> None:
        await store.append(
            add(basket(), counters=[inventory("inventory:t1", 2), hold("inventory:t1", 2)])
        )
        sell = CounterChange(
            "inventory:t1",
            {"held": -2, "sold": 2},
            sum_fields=("held", "sold"),
            ceiling_field="capacity",
            code="sold_out",
        )
        await store.append(add(basket(), counters=[sell]))
        assert await store.read_counters(PARTITION, ["inventory:t1"]) == {
            "inventory:t1": {"capacity": 2, "held": 0, "sold": 2}
        }

    async def test_a_changed_counter_field_may_not_go_below_zero(
        self, store: EventStorePort
    ) -> None:
        with pytest.raises(GuardRejected) as raised:
            await store.append(
                add(
                    basket(),
                    counters=[CounterChange("buyer:1", {"tickets": -1}, code="nothing_to_release")],
                )
            )
        assert (raised.value.code, raised.value.name) == ("nothing_to_release", "buyer:1")
        assert await store.read_counters(PARTITION, ["buyer:1"]) == {"buyer:1": {}}

    async def test_a_fixed_ceiling_limits_the_sum_of_fields(self, store: EventStorePort) -> None:
        def buy(tickets: int) -> CounterChange:
            return CounterChange(
                "buyer:1", {"tickets": tickets}, sum_fields=("tickets",), ceiling=4, code="limit"
            )

        await store.append(add(basket(), counters=[buy(4)]))
        with pytest.raises(GuardRejected) as raised:
            await store.append(add(basket(), counters=[buy(1)]))
        assert raised.value.code == "limit"
        assert await store.read_counters(PARTITION, ["buyer:1"]) == {"buyer:1": {"tickets": 4}}

    async def test_a_ceiling_field_that_does_not_exist_counts_as_zero(
        self, store: EventStorePort
    ) -> None:
        with pytest.raises(GuardRejected):
            await store.append(add(basket(), counters=[hold("inventory:unknown", 1)]))
        assert await store.read_counters(PARTITION, ["inventory:unknown"]) == {
            "inventory:unknown": {}
        }

    async def test_a_change_of_zero_records_the_field(self, store: EventStorePort) -> None:
        await store.append(add(basket(), counters=[CounterChange("buyer:1", {"x": 0}, code="c")]))
        assert await store.read_counters(PARTITION, ["buyer:1"]) == {"buyer:1": {"x": 0}}

    # Stream-version guards

    async def test_an_append_passes_while_another_stream_is_at_the_version_read(
        self, store: EventStorePort
    ) -> None:
        price_list, order = basket(), basket()
        await store.append(add(price_list))
        result = await store.append(
            add(order, stream_versions=[StreamVersion(price_list, 1, code="prices_changed")])
        )
        assert result.version == 1

    async def test_an_append_writes_nothing_when_the_other_stream_moved_on(
        self, store: EventStorePort
    ) -> None:
        price_list, order = basket(), basket()
        await store.append(add(price_list, item("a"), item("b")))
        with pytest.raises(GuardRejected) as rejected:
            await store.append(
                add(
                    order,
                    BasketClosed(),
                    idempotency_id="cmd-1",
                    counters=[CounterSet("inventory:t1", {"capacity": 1})],
                    stream_versions=[StreamVersion(price_list, 1, code="prices_changed")],
                )
            )
        assert (rejected.value.code, rejected.value.name) == ("prices_changed", price_list)
        assert await store.read_stream(PARTITION, order) == []
        assert len(await store.read_log(PARTITION)) == 2
        assert await store.read_counters(PARTITION, ["inventory:t1"]) == {"inventory:t1": {}}
        assert await store.find_earlier(PARTITION, "cmd-1") is None

    async def test_a_missing_stream_is_at_version_zero(self, store: EventStorePort) -> None:
        result = await store.append(
            add(basket(), stream_versions=[StreamVersion(basket(), 0, code="prices_changed")])
        )
        assert result.version == 1

    async def test_refusals_come_in_order_version_then_stream_version_claim_and_counter(
        self, store: EventStorePort
    ) -> None:
        stream, moved = basket(), basket()
        await store.append(
            add(
                moved,
                counters=[inventory("inventory:t1", 0)],
                claims=[Claim("seat:1", "account-1", "seat_taken")],
            )
        )
        stream_versions = [StreamVersion(moved, 0, code="changed")]
        claims = [Claim("seat:1", "account-2", "seat_taken")]
        counters = [hold("inventory:t1", 1)]
        with pytest.raises(ConcurrencyError):
            await store.append(
                add(
                    stream,
                    expected_version=3,
                    stream_versions=stream_versions,
                    claims=claims,
                    counters=counters,
                )
            )
        refusals: list[str] = []
        for request in (
            add(stream, stream_versions=stream_versions, claims=claims, counters=counters),
            add(stream, claims=claims, counters=counters),
            add(stream, counters=counters),
        ):
            with pytest.raises(GuardRejected) as rejected:
                await store.append(request)
            refusals.append(rejected.value.code)
        assert refusals == ["changed", "seat_taken", "sold_out"]
        assert await store.stream_version(PARTITION, stream) == 0

    # Schedules

    async def test_schedule_changes_add_move_and_remove_members(
        self, store: EventStorePort, factory: StoreFactory
    ) -> None:
        deadline = 1_740_830_400_000.0
        await store.append(
            add(
                basket(),
                schedules=[
                    ScheduleChange("hold-expiry", "order-1", deadline),
                    ScheduleChange("hold-expiry", "order-2", deadline + 1),
                ],
            )
        )
        assert await factory.schedule(PARTITION, "hold-expiry") == {
            "order-1": deadline,
            "order-2": deadline + 1,
        }
        await store.append(
            add(
                basket(),
                schedules=[
                    ScheduleChange("hold-expiry", "order-1", None),
                    ScheduleChange("hold-expiry", "order-2", deadline + 5),
                    ScheduleChange("hold-expiry", "order-3", None),
                ],
            )
        )
        assert await factory.schedule(PARTITION, "hold-expiry") == {"order-2": deadline + 5}
        await store.append(add(basket(), schedules=[ScheduleChange("hold-expiry", "order-2")]))
        assert await factory.schedule(PARTITION, "hold-expiry") == {}

    # Concurrency

    async def test_concurrent_appends_with_mixed_outcomes_each_get_their_own(
        self, store: EventStorePort
    ) -> None:
        await store.append(
            add(basket(), counters=[CounterSet("inventory:t1", {"capacity": 10, "held": 0})])
        )
        earlier = [await store.append(add(basket(), idempotency_id=f"cmd-{n}")) for n in range(5)]
        fresh = [basket() for _ in range(20)]
        over_capacity = CounterChange(
            "inventory:t1",
            {"held": 11},
            sum_fields=("held",),
            ceiling_field="capacity",
            code="sold_out",
        )
        requests = (
            [add(stream, expected_version=0) for stream in fresh]
            + [add(basket(), expected_version=3) for _ in range(5)]
            + [add(basket(), counters=[over_capacity]) for _ in range(5)]
            + [add(basket(), idempotency_id=f"cmd-{n}") for n in range(5)]
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
        assert [(r.stream, r.version) for r in successes] == [  # type: ignore[union-attr]
            (stream, 1) for stream in fresh
        ]
        assert all(isinstance(error, ConcurrencyError) for error in conflicts)
        assert {error.actual_version for error in conflicts} == {0}  # type: ignore[union-attr]
        assert all(isinstance(error, GuardRejected) for error in rejections)
        assert {error.code for error in rejections} == {"sold_out"}  # type: ignore[union-attr]
        assert [r.duplicate for r in duplicates] == [True] * 5  # type: ignore[union-attr]
        assert [r.events for r in duplicates] == [r.events for r in earlier]  # type: ignore[union-attr]
        assert len(await store.read_log(PARTITION, count=1000)) == 1 + 5 + 20

    @settings(
        max_examples=30,
        deadline=None,
        # Each example empties the store itself; each subclass runs this method on its own
        # implementation, which is the point of the contract.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(capacity=CAPACITIES, plan=ROUNDS)
    async def test_concurrent_guarded_appends_never_oversell_nor_write_partially(
        self, factory: StoreFactory, capacity: dict[str, int], plan: list[list[Hold]]
    ) -> None:
        await factory.empty()
        await check_interleavings(factory.open(), capacity, plan)

    # Numbering: a number taken inside the append

    async def test_a_numbering_takes_the_next_number_and_writes_it_into_the_events(
        self, store: EventStorePort
    ) -> None:
        first, second = basket(), basket()
        one = await store.append(numbered(first, item("a"), ReceiptIssued(note="thanks")))
        two = await store.append(numbered(second))
        assert (one.number, two.number) == (1, 2)
        assert receipts_of(one.events) == [
            ReceiptIssued(sequence=1, number="R-0001", note="thanks")
        ]
        assert receipts_of(two.events) == [ReceiptIssued(sequence=2, number="R-0002")]
        assert receipts_of(await store.read_stream(first)) == receipts_of(one.events)
        assert receipts_of(await store.read_log(PARTITION)) == [
            ReceiptIssued(sequence=1, number="R-0001", note="thanks"),
            ReceiptIssued(sequence=2, number="R-0002"),
        ]
        counters = await store.read_counters(PARTITION, [RECEIPTS])
        assert counters[RECEIPTS] == {"issued": 2}

    async def test_a_refused_or_repeated_append_takes_no_number(
        self, store: EventStorePort
    ) -> None:
        stream = basket()
        await store.append(numbered(stream, idempotency_id="pay-1"))
        with pytest.raises(ConcurrencyError):
            await store.append(numbered(stream, expected_version=0))
        with pytest.raises(GuardRejected):
            await store.append(
                numbered(basket(), counters=[CounterChange("stock", {"n": -1}, code="empty")])
            )
        await store.append(add(basket(), claims=[Claim("seat-1", "y", code="taken")]))
        with pytest.raises(GuardRejected):
            await store.append(numbered(basket(), claims=[Claim("seat-1", "x", code="taken")]))
        repeat = await store.append(numbered(stream, idempotency_id="pay-1"))
        assert repeat.duplicate
        assert receipts_of(repeat.events) == [ReceiptIssued(sequence=1, number="R-0001")]
        after = await store.append(numbered(basket()))
        assert receipts_of(after.events) == [ReceiptIssued(sequence=2, number="R-0002")]
        assert (await store.read_counters(PARTITION, [RECEIPTS]))[RECEIPTS] == {"issued": 2}

    async def test_a_numbering_past_its_maximum_is_refused_and_writes_nothing(
        self, store: EventStorePort
    ) -> None:
        await store.append(add(basket(), ReceiptIssued(), numbering=receipt_numbering(maximum=1)))
        full = basket()
        with pytest.raises(GuardRejected) as refused:
            await store.append(add(full, ReceiptIssued(), numbering=receipt_numbering(maximum=1)))
        assert (refused.value.code, refused.value.name) == ("receipts_exhausted", RECEIPTS)
        assert await store.read_stream(full) == []
        assert len(await store.read_log(PARTITION)) == 1

    async def test_only_the_declared_fields_holding_the_placeholder_are_numbered(
        self, store: EventStorePort
    ) -> None:
        # Text that merely looks like a placeholder (even with its key) stays as written.
        note = 'R-0000 "sequence":0 "number":"R-0000"'
        result = await store.append(numbered(basket(), ReceiptIssued(note=note), item("R-0000")))
        assert receipts_of(result.events) == [ReceiptIssued(sequence=1, number="R-0001", note=note)]
        assert [event.data for event in await store.read_log(PARTITION)] == [
            ReceiptIssued(sequence=1, number="R-0001", note=note),
            item("R-0000"),
        ]

    async def test_an_append_without_the_placeholder_is_refused_before_writing(
        self, store: EventStorePort
    ) -> None:
        with pytest.raises(ValueError, match="placeholder"):
            await store.append(numbered(basket(), ReceiptIssued(sequence=7, number="R-0007")))
        assert await store.read_log(PARTITION) == []

    async def test_concurrent_numbered_appends_take_gapless_numbers_and_refusals_take_none(
        self, store: EventStorePort
    ) -> None:
        taken = basket()
        await store.append(add(taken))
        fresh = [basket() for _ in range(30)]

        async def attempt(index: int) -> AppendResult | Exception:
            # Every third append is refused (its stream is not new): it must take no number.
            stream, expected = (taken, 0) if index % 3 == 0 else (fresh[index], 0)
            try:
                return await store.append(numbered(stream, expected_version=expected))
            except ConcurrencyError as error:
                return error

        outcomes = await asyncio.gather(*(attempt(index) for index in range(30)))
        written = [o for o in outcomes if isinstance(o, AppendResult)]
        assert len(written) == 20
        assert sorted(r.number or 0 for r in written) == list(range(1, 21))
        numbers = [receipt.sequence for receipt in receipts_of(await store.read_log(PARTITION))]
        assert sorted(numbers) == list(range(1, 21))
        assert numbers == sorted(numbers), "numbers follow the log's order"
        assert (await store.read_counters(PARTITION, [RECEIPTS]))[RECEIPTS] == {"issued": 20}
