"""The event-store port: what services need of an event store, met by Redis and in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, overload

from eventhunting.store.append import AppendRequest, AppendResult
from eventhunting.store.envelope import EventEnvelope


class EventStorePort(Protocol):
    """Atomic guarded appends and the reads that go with them.

    Services use `partitions`, `append`, `read_stream`, `read_claim`, `read_counters` and
    `find_earlier`; `stream_version` and `read_log` complete the reads docs/internals.md
    names, and let a test see what an append wrote.

    `eventhunting.store.append.EventStore` (Redis, one Lua script) is the implementation of
    record; `eventhunting.store.memory.InMemoryEventStore` has the same semantics for unit
    tests. `tests/contract/event_store_contract.py` holds both to one suite.
    """

    @property
    def partitions(self) -> int:
        """How many partitions the store has; `append` refuses any other partition."""
        ...

    async def append(self, request: AppendRequest) -> AppendResult:
        """Write the request atomically, or raise ConcurrencyError/GuardRejected writing nothing.

        A repeated idempotency id writes nothing and returns the first result with
        `duplicate=True` and the first request's fingerprint.
        """
        ...

    @overload
    async def read_stream(
        self, stream: str, /, *, after_version: int = 0
    ) -> list[EventEnvelope]: ...

    @overload
    async def read_stream(
        self, partition: int, stream: str, *, after_version: int = 0
    ) -> list[EventEnvelope]: ...

    async def stream_version(self, partition: int, stream: str) -> int:
        """The current version of an aggregate stream (0 when it does not exist)."""
        ...

    async def read_log(
        self, partition: int, after: str = "0", count: int = 100
    ) -> list[EventEnvelope]:
        """Up to `count` events of a partition log strictly after position `after`."""
        ...

    async def read_claim(self, partition: int, name: str) -> str | None:
        """The owner of a unique claim, or None when it is free."""
        ...

    async def read_counters(
        self, partition: int, names: Sequence[str]
    ) -> dict[str, dict[str, int]]:
        """Write-side counter hashes by name; a counter that does not exist reads as {}."""
        ...

    async def find_earlier(self, partition: int, idempotency_id: str) -> AppendResult | None:
        """What an append with this idempotency id wrote, or None when none was made."""
        ...


if TYPE_CHECKING:
    from eventhunting.store.append import EventStore

    def _redis_store_is_an_event_store_port(store: EventStore) -> EventStorePort:
        return store
