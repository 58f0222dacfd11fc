"""The event envelope, its metadata and the compact record stored in Redis streams."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import msgspec

from eventhunting.domain.events import DomainEvent, EventRegistry

# Envelopes and stored records are values, like the events they carry (see DomainEvent):
# the garbage collector does not track them.


class EventMeta(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Why an event happened: the command, the conversation it belongs to, and who asked."""

    command_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None


class EventEnvelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One stored event. `partition` and `position` are set when it was read from a log."""

    event_id: str
    stream: str
    version: int
    type: str
    schema: int
    occurred_at: datetime
    data: DomainEvent
    meta: EventMeta
    partition: int | None = None
    position: str | None = None


class StoredMeta(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """EventMeta as a JSON array, so field names are not repeated in every stream entry."""

    command_id: str | None
    correlation_id: str | None
    causation_id: str | None
    actor: str | None


class StoredEvent(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The `e` field of a stream entry: everything but the stream name and version.

    `data` stays raw JSON in the schema it was written with; it is upcast only on decode.
    """

    event_id: str
    type: str
    schema: int
    occurred_at_ms: int
    meta: StoredMeta
    data: msgspec.Raw


stored_event_encoder = msgspec.json.Encoder()
stored_event_decoder = msgspec.json.Decoder(StoredEvent)


def to_epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware (UTC)")
    return int(moment.timestamp() * 1000)


# Events of one append share their millisecond, and a log is read in time order, so the
# same instants come again and again while a log is read: each is made once.
@functools.lru_cache(maxsize=4_096)
def from_epoch_ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def encode_stored_event(
    *,
    event_id: str,
    type_name: str,
    schema: int,
    occurred_at: datetime,
    meta: EventMeta,
    data: DomainEvent,
) -> bytes:
    stored = StoredEvent(
        event_id=event_id,
        type=type_name,
        schema=schema,
        occurred_at_ms=to_epoch_ms(occurred_at),
        meta=StoredMeta(meta.command_id, meta.correlation_id, meta.causation_id, meta.actor),
        data=msgspec.Raw(stored_event_encoder.encode(data)),
    )
    return stored_event_encoder.encode(stored)


@functools.cache
def payload_decoder(payload: type[DomainEvent]) -> msgspec.json.Decoder[DomainEvent]:
    """One decoder per payload type, made on first use (a decoder per call costs as much
    as the decoding of a small payload)."""
    return msgspec.json.Decoder(payload, strict=False)


def decode_payload(
    registry: EventRegistry, type_name: str, schema: int, data: bytes | msgspec.Raw
) -> DomainEvent:
    """Decode stored payload JSON into the registered type, upcasting an older schema."""
    described = registry.by_name.get(type_name)
    if described is not None and described.schema == schema:
        return payload_decoder(described.payload).decode(data)
    raw: dict[str, Any] = msgspec.json.decode(data, type=dict[str, Any])
    return registry.decode(type_name, schema, raw)


def decode_stored_event(
    registry: EventRegistry,
    stored: StoredEvent,
    *,
    stream: str,
    version: int,
    partition: int | None = None,
    position: str | None = None,
) -> EventEnvelope:
    data = decode_payload(registry, stored.type, stored.schema, stored.data)
    return EventEnvelope(
        event_id=stored.event_id,
        stream=stream,
        version=version,
        type=stored.type,
        schema=registry.by_name[stored.type].schema,
        occurred_at=from_epoch_ms(stored.occurred_at_ms),
        data=data,
        meta=EventMeta(
            command_id=stored.meta.command_id,
            correlation_id=stored.meta.correlation_id,
            causation_id=stored.meta.causation_id,
            actor=stored.meta.actor,
        ),
        partition=partition,
        position=position,
    )
