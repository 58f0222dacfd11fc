"""The event-store contract against the in-memory store services' unit tests may use."""

from __future__ import annotations

import pytest

from eventhunting.domain.events import EventRegistry
from eventhunting.store.memory import InMemoryEventStore, InMemoryStorage
from tests.contract.event_store_contract import (
    PARTITIONS,
    Clock,
    EventStoreContract,
    StoreFactory,
    fixed_clock,
)
from tests.support.store_events import store_test_registry


class InMemoryStoreFactory(StoreFactory):
    """In-memory stores sharing one storage, as Redis stores share one server."""

    def __init__(self) -> None:
        self.storage = InMemoryStorage()

    def open(
        self, *, event_registry: EventRegistry = store_test_registry, clock: Clock = fixed_clock
    ) -> InMemoryEventStore:
        return InMemoryEventStore(
            PARTITIONS, clock=clock, event_registry=event_registry, storage=self.storage
        )

    async def empty(self) -> None:
        self.storage.partitions.clear()

    async def schedule(self, partition: int, name: str) -> dict[str, float]:
        return dict(self.storage.partition(partition).schedules.get(name, {}))


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def factory(self) -> StoreFactory:
        return InMemoryStoreFactory()
