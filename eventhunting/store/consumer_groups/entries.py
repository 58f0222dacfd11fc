"""Partition-log entries as the consumer runtime reads them, and decoding of XREADGROUP replies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eventhunting.domain.events import EventRegistry, registry
from eventhunting.store.append import decode_log_entry, text
from eventhunting.store.envelope import EventEnvelope
from eventhunting.store.keys import partition_of_key


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One raw partition-log entry: where it is and its stored fields."""

    partition: int
    position: str
    stream: str
    version: int
    record: bytes
    effects: bytes | None


def raw_field(fields: Mapping[Any, Any], name: str) -> bytes | None:
    value = fields.get(name.encode(), fields.get(name))
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode()


def log_entry(partition: int, entry_id: bytes | str, fields: Mapping[Any, Any]) -> LogEntry:
    stream = raw_field(fields, "s")
    version = raw_field(fields, "v")
    record = raw_field(fields, "e")
    if stream is None or version is None or record is None:
        raise ValueError(f"log entry {text(entry_id)} of partition {partition} is malformed")
    return LogEntry(
        partition=partition,
        position=text(entry_id),
        stream=stream.decode(),
        version=int(version),
        record=record,
        effects=raw_field(fields, "x"),
    )


def position_key(position: str) -> tuple[int, int]:
    """A stream entry id as a sortable pair."""
    milliseconds, _, sequence = position.partition("-")
    return int(milliseconds), int(sequence or 0)


@dataclass(frozen=True, slots=True)
class Delivered:
    """What one XREADGROUP gave for one partition: entries, and ids whose entry is gone."""

    entries: list[LogEntry]
    vanished: list[str]


def entries_of_reply(reply: Any) -> dict[int, Delivered]:
    """An XREADGROUP reply (RESP2 list or RESP3 dict) per partition.

    A pending entry deleted from the log comes back without fields; its id is listed in
    `vanished` so the caller can acknowledge it.
    """
    if not reply:
        return {}
    pairs = reply.items() if isinstance(reply, dict) else reply
    batches: dict[int, Delivered] = {}
    for stream_name, stream_entries in pairs:
        partition = partition_of_key(text(stream_name))
        entries = stream_entries
        if entries and isinstance(entries[0], list):
            # RESP3 replies wrap the entry list in one more list.
            entries = entries[0]
        found = Delivered(entries=[], vanished=[])
        for entry_id, fields in entries:
            if fields:
                found.entries.append(log_entry(partition, entry_id, fields))
            else:
                found.vanished.append(text(entry_id))
        if found.entries or found.vanished:
            batches[partition] = found
    return batches


def raw_entry(entry: LogEntry) -> LogEntry:
    """The identity decoder, for handlers that want the stored entry itself (the archiver)."""
    return entry


def envelope_decoder(
    event_registry: EventRegistry = registry,
) -> Callable[[LogEntry], EventEnvelope]:
    """Decode log entries into envelopes (upcast to the current schemas of `event_registry`)."""

    def decode(entry: LogEntry) -> EventEnvelope:
        fields = {
            b"s": entry.stream.encode(),
            b"v": str(entry.version).encode(),
            b"e": entry.record,
        }
        return decode_log_entry(event_registry, entry.partition, entry.position, fields)

    return decode
