"""Consumer-group runtime: partition ownership, strict-order delivery, dead letters, metrics."""

from eventhunting.store.consumer_groups.dead_letters import DeadLetters
from eventhunting.store.consumer_groups.entries import (
    Delivered,
    LogEntry,
    entries_of_reply,
    envelope_decoder,
    log_entry,
    position_key,
    raw_entry,
)
from eventhunting.store.consumer_groups.outages import is_outage
from eventhunting.store.consumer_groups.ownership import (
    Lease,
    LeaseLost,
    PartitionOwnership,
    unique_consumer_name,
)
from eventhunting.store.consumer_groups.runtime import (
    BatchHandler,
    ConsumerConfig,
    ConsumerGroup,
    ConsumerGroupMissing,
)

__all__ = [
    "BatchHandler",
    "ConsumerConfig",
    "ConsumerGroup",
    "ConsumerGroupMissing",
    "DeadLetters",
    "Delivered",
    "Lease",
    "LeaseLost",
    "LogEntry",
    "PartitionOwnership",
    "entries_of_reply",
    "envelope_decoder",
    "is_outage",
    "log_entry",
    "position_key",
    "raw_entry",
    "unique_consumer_name",
]
