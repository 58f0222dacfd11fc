"""Partitions and Redis key names; every key of partition k carries the hash tag {p<k>}."""

from __future__ import annotations

import zlib

from ulid import ULID


def partition_of(key: str, partitions: int) -> int:
    """The partition of a key: crc32 of its UTF-8 bytes modulo the partition count."""
    return zlib.crc32(key.encode()) % partitions


def new_id_in_partition(partition: int, partitions: int) -> str:
    """A fresh ULID whose own partition is `partition`, so the id alone tells its partition."""
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} is outside 0..{partitions - 1}")
    while True:
        candidate = str(ULID())
        if partition_of(candidate, partitions) == partition:
            return candidate


def aggregate_id_of(stream: str) -> str:
    """The aggregate id of a stream named `<kind>-<id>`."""
    _, separator, aggregate_id = stream.partition("-")
    if not separator or not aggregate_id:
        raise ValueError(f"stream name {stream!r} is not of the form <kind>-<id>")
    return aggregate_id


def partition_of_stream(stream: str, partitions: int) -> int:
    """The partition of an aggregate stream, computed from the id in its name."""
    return partition_of(aggregate_id_of(stream), partitions)


def hash_tag(partition: int) -> str:
    return f"{{p{partition}}}"


def log_key(partition: int) -> str:
    return f"{{p{partition}}}:log"


def stream_key(partition: int, stream: str) -> str:
    return f"{{p{partition}}}:stream:{stream}"


def idempotency_key(partition: int, idempotency_id: str) -> str:
    return f"{{p{partition}}}:idem:{idempotency_id}"


def counter_key(partition: int, name: str) -> str:
    return f"{{p{partition}}}:counter:{name}"


def claim_key(partition: int, name: str) -> str:
    return f"{{p{partition}}}:claim:{name}"


def schedule_key(partition: int, name: str) -> str:
    return f"{{p{partition}}}:schedule:{name}"


def dead_letter_key(partition: int, group: str) -> str:
    """Entries of the partition log that consumer group `group` gave up on."""
    return f"{{p{partition}}}:{group}:dead"


def lease_key(partition: int, group: str) -> str:
    """Which consumer of `group` currently owns the partition (keeps per-partition order)."""
    return f"{{p{partition}}}:lease:{group}"
