"""Partitions and Redis key names; every key of partition k carries the hash tag {p<k>}."""

from __future__ import annotations

import os
import time
import zlib

from ulid import ULID

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TAILS = tuple(first + second for first in _CROCKFORD for second in _CROCKFORD)


def partition_of(key: str, partitions: int) -> int:
    """The partition of a key: crc32 of its UTF-8 bytes modulo the partition count."""
    return zlib.crc32(key.encode()) % partitions


def new_id_in_partition(partition: int, partitions: int) -> str:
    """A fresh ULID whose own partition is `partition`, so the id alone tells its partition."""
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} is outside 0..{partitions - 1}")
    # A ULID costs far more to draw than a crc32; varying the last two characters (the
    # lowest 10 random bits) of one draw tries 1,024 candidates that are all valid ULIDs.
    # The stem takes fresh random bytes: the library's monotonic ULIDs of one millisecond
    # differ only in their lowest bits and would share a stem.
    while True:
        timestamp = time.time_ns() // 1_000_000
        stem = str(ULID.from_bytes(timestamp.to_bytes(6, "big") + os.urandom(10)))[:-2]
        for tail in _TAILS:
            candidate = stem + tail
            if zlib.crc32(candidate.encode()) % partitions == partition:
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
    """Which consumer of `group` owns the partition now: `"<fencing token> <consumer>"`."""
    return f"{{p{partition}}}:lease:{group}"


def fence_key(partition: int, group: str) -> str:
    """The last fencing token handed out for the partition's lease of `group`."""
    return f"{{p{partition}}}:lease:{group}:fence"


def group_members_key(group: str) -> str:
    """Live consumers of `group` (sorted set, score = heartbeat deadline in ms)."""
    return f"group-members:{group}"


def partition_of_key(key: str) -> int:
    """The partition of a partitioned key, read from its `{p<k>}` hash tag."""
    if not key.startswith("{p"):
        raise ValueError(f"key {key!r} carries no partition hash tag")
    return int(key[2 : key.index("}")])
