"""A partition lease for tests that call a batch handler directly, as the runtime would."""

from __future__ import annotations

from eventhunting.store.consumer_groups import Lease
from eventhunting.store.envelope import EventEnvelope


def lease_of(batch: list[EventEnvelope], token: int = 1) -> Lease:
    """The lease a consumer would hold on the batch's partition."""
    partition = batch[0].partition if batch else 0
    return Lease(partition=partition or 0, token=token, consumer="test")
