"""Partition hashing, partition-local ids and key names of the event store."""

from __future__ import annotations

import zlib

import pytest

from eventhunting.store import counters, keys


def test_partition_of_is_crc32_modulo_partitions() -> None:
    assert keys.partition_of("01JCXYZ", 16) == zlib.crc32(b"01JCXYZ") % 16


def test_new_id_in_partition_lands_in_the_requested_partition() -> None:
    for partition in range(16):
        assert keys.partition_of(keys.new_id_in_partition(partition, 16), 16) == partition


def test_new_id_in_partition_refuses_a_partition_outside_the_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        keys.new_id_in_partition(16, 16)


def test_partition_of_stream_uses_the_aggregate_id() -> None:
    order_id = keys.new_id_in_partition(5, 16)
    assert keys.partition_of_stream(f"order-{order_id}", 16) == 5


def test_partition_of_stream_rejects_a_name_without_an_id() -> None:
    with pytest.raises(ValueError, match="<kind>-<id>"):
        keys.partition_of_stream("order", 16)


def test_every_key_of_a_partition_carries_its_hash_tag() -> None:
    names = [
        keys.log_key(3),
        keys.stream_key(3, "order-1"),
        keys.idempotency_key(3, "cmd"),
        keys.counter_key(3, "inventory:t1"),
        keys.claim_key(3, "email:a@b.c"),
        keys.schedule_key(3, "hold-expiry"),
        keys.dead_letter_key(3, "projector"),
        keys.lease_key(3, "projector"),
    ]
    assert all(name.startswith("{p3}:") for name in names)
    assert keys.stream_key(3, "order-1") == "{p3}:stream:order-1"
    assert keys.dead_letter_key(3, "projector") == "{p3}:projector:dead"


def test_new_ids_in_a_partition_are_distinct_ulids() -> None:
    from ulid import ULID

    drawn = [keys.new_id_in_partition(3, 16) for _ in range(2_000)]
    assert len(set(drawn)) == len(drawn)
    assert all(str(ULID.from_str(identifier)) == identifier for identifier in drawn)
    assert {keys.partition_of(identifier, 16) for identifier in drawn} == {3}


def test_an_inventory_counter_name_reads_back_as_its_ticket_type() -> None:
    assert counters.inventory_counter("01TT") == "inventory:01TT"
    assert counters.ticket_type_of_inventory_counter(counters.inventory_counter("01TT")) == "01TT"
    with pytest.raises(ValueError, match="not an inventory counter"):
        counters.ticket_type_of_inventory_counter("account:01TT")
