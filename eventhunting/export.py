"""`eventhunting export`: the archived event history as Parquet or JSON lines, for analysts."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TextIO

import msgspec
from pymongo import ASCENDING

from eventhunting.domain import catalog
from eventhunting.domain.events import EventRegistry, registry
from eventhunting.domain.orders import OrderPlaced
from eventhunting.projections.base import Database, Document
from eventhunting.projections.replay import envelope_of_document
from eventhunting.store.archive import EVENTS_COLLECTION
from eventhunting.store.envelope import EventEnvelope
from eventhunting.store.keys import partition_of
from eventhunting.store.progress import ProgressBar

if TYPE_CHECKING:
    import pyarrow as pa

    from eventhunting.settings import StoreSettings

ExportFormat = Literal["parquet", "jsonl"]

READ_PAGE = 1_000
"""Archived events fetched per round trip."""
PARQUET_ROW_GROUP = 10_000
"""Rows written at a time: memory holds one group, whatever the history's length."""
SECRET_FIELDS = frozenset({"password_hash"})
"""Payload fields that never leave the write side, not even in an export."""

ENVELOPE_COLUMNS = (
    "event_id",
    "stream",
    "version",
    "type",
    "schema",
    "occurred_at",
    "partition",
    "position",
    "command_id",
    "correlation_id",
    "causation_id",
    "actor",
)
"""Columns every row has; the payload follows as `data_<field>` (nested objects flattened
with `_`, lists kept as lists)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportQuery:
    """Which events: occurred in [since, until) and, with `event_id`, only that catalog
    event's stream and the streams of its orders."""

    since: datetime | None = None
    until: datetime | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class ExportReport:
    rows: int
    path: Path


def flatten(prefix: str, value: Any, row: dict[str, Any]) -> None:
    """Objects become `prefix_field` columns; everything else is kept as it is."""
    if isinstance(value, dict):
        for name, inner in value.items():
            if name not in SECRET_FIELDS:
                flatten(f"{prefix}_{name}", inner, row)
    else:
        row[prefix] = value


def row_of(envelope: EventEnvelope) -> dict[str, Any]:
    """One row: the envelope's fields and the payload in the current schema, flattened."""
    row: dict[str, Any] = {
        "event_id": envelope.event_id,
        "stream": envelope.stream,
        "version": envelope.version,
        "type": envelope.type,
        "schema": envelope.schema,
        "occurred_at": envelope.occurred_at,
        "partition": envelope.partition,
        "position": envelope.position,
        "command_id": envelope.meta.command_id,
        "correlation_id": envelope.meta.correlation_id,
        "causation_id": envelope.meta.causation_id,
        "actor": envelope.meta.actor,
    }
    flatten("data", msgspec.to_builtins(envelope.data, builtin_types=(datetime,)), row)
    return row


def archive_filter(query: ExportQuery, partitions: int) -> Document:
    selector: Document = {}
    occurred: Document = {}
    if query.since is not None:
        occurred["$gte"] = query.since
    if query.until is not None:
        occurred["$lt"] = query.until
    if occurred:
        selector["occurred_at"] = occurred
    if query.event_id is not None:
        # Everything of one catalog event lives in its partition.
        selector["partition"] = partition_of(query.event_id, partitions)
    return selector


async def archived_events(
    database: Database, query: ExportQuery, partitions: int, event_registry: EventRegistry
) -> AsyncIterator[EventEnvelope]:
    """Archived events in log order per partition, upcast to their current schema.

    With `event_id`, only its partition is read, and an order stream is kept once its
    OrderPlaced names the event (the set of streams grows with that event's orders only).
    """
    event_stream = f"{catalog.STREAM_KIND}-{query.event_id}"
    order_streams: set[str] = set()
    cursor = database[EVENTS_COLLECTION].find(
        archive_filter(query, partitions),
        sort=[("partition", ASCENDING), ("position_ms", ASCENDING), ("position_seq", ASCENDING)],
        batch_size=READ_PAGE,
    )
    async for document in cursor:
        if query.event_id is not None:
            stream = document["stream"]
            if stream != event_stream and stream not in order_streams:
                if document["type"] != "OrderPlaced":
                    continue
                if (document.get("data") or {}).get("event_id") != query.event_id:
                    continue
        envelope = envelope_of_document(event_registry, document)
        if query.event_id is not None and isinstance(envelope.data, OrderPlaced):
            order_streams.add(envelope.stream)
        yield envelope


# --- Parquet: one schema for every event type, derived from the registry ------------------


def arrow_type_of(info: msgspec.inspect.Type) -> pa.DataType | None:
    """The Arrow type of a payload field; None for a nested object (flattened instead)."""
    import pyarrow as pa

    match info:
        case msgspec.inspect.StrType() | msgspec.inspect.LiteralType() | msgspec.inspect.EnumType():
            return pa.string()
        case msgspec.inspect.BoolType():
            return pa.bool_()
        case msgspec.inspect.IntType():
            return pa.int64()
        case msgspec.inspect.FloatType():
            return pa.float64()
        case msgspec.inspect.DateTimeType():
            return pa.timestamp("ms", tz="UTC")
        case msgspec.inspect.UnionType():
            present = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
            return arrow_type_of(present[0]) if len(present) == 1 else pa.string()
        case (
            msgspec.inspect.ListType()
            | msgspec.inspect.VarTupleType()
            | msgspec.inspect.SetType()
            | msgspec.inspect.FrozenSetType()
        ):
            item = info.item_type
            if isinstance(item, msgspec.inspect.StructType):
                return pa.list_(struct_of(item))
            inner = arrow_type_of(item)
            return pa.list_(inner if inner is not None else pa.string())
        case msgspec.inspect.StructType():
            return None
        case _:
            return pa.string()


def struct_of(info: msgspec.inspect.StructType) -> pa.DataType:
    import pyarrow as pa

    fields = []
    for field in info.fields:
        inner = arrow_type_of(field.type)
        fields.append(
            pa.field(field.encode_name, inner if inner is not None else pa.string(), nullable=True)
        )
    return pa.struct(fields)


def payload_columns(prefix: str, info: msgspec.inspect.StructType) -> Iterable[tuple[str, Any]]:
    for field in info.fields:
        if field.encode_name in SECRET_FIELDS:
            continue
        name = f"{prefix}_{field.encode_name}"
        kind = field.type
        if isinstance(kind, msgspec.inspect.UnionType):
            present = [t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)]
            kind = present[0] if len(present) == 1 else kind
        if isinstance(kind, msgspec.inspect.StructType):
            yield from payload_columns(name, kind)
        else:
            yield name, arrow_type_of(kind)


def merged(first: pa.DataType, second: pa.DataType) -> pa.DataType:
    """One column type for two event types' fields of the same name."""
    import pyarrow as pa

    if first == second:
        return first
    if pa.types.is_list(first) and pa.types.is_list(second):
        item_first, item_second = first.value_type, second.value_type
        if pa.types.is_struct(item_first) and pa.types.is_struct(item_second):
            fields = {f.name: f for f in item_first}
            for f in item_second:
                fields[f.name] = (
                    f
                    if f.name not in fields
                    else pa.field(f.name, merged(fields[f.name].type, f.type))
                )
            return pa.list_(pa.struct(list(fields.values())))
    return pa.string()


def export_schema(event_registry: EventRegistry) -> pa.Schema:
    """Envelope columns, then every registered event type's flattened payload columns (a
    field that two types declare differently becomes text, lists of objects are merged)."""
    import pyarrow as pa

    columns: dict[str, pa.DataType] = {
        "event_id": pa.string(),
        "stream": pa.string(),
        "version": pa.int64(),
        "type": pa.string(),
        "schema": pa.int64(),
        "occurred_at": pa.timestamp("ms", tz="UTC"),
        "partition": pa.int64(),
        "position": pa.string(),
        "command_id": pa.string(),
        "correlation_id": pa.string(),
        "causation_id": pa.string(),
        "actor": pa.string(),
    }
    for name in sorted(event_registry.by_name):
        info = msgspec.inspect.type_info(event_registry.by_name[name].payload)
        assert isinstance(info, msgspec.inspect.StructType)
        for column, kind in payload_columns("data", info):
            kind = kind if kind is not None else pa.string()
            columns[column] = merged(columns[column], kind) if column in columns else kind
    return pa.schema([pa.field(name, kind, nullable=True) for name, kind in columns.items()])


def fitted(row: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """The row with text where the schema says text (a field two event types declare apart)."""
    import pyarrow as pa

    for field in schema:
        value = row.get(field.name)
        if value is not None and pa.types.is_string(field.type) and not isinstance(value, str):
            row[field.name] = json.dumps(value, default=str, ensure_ascii=False)
    return row


class ParquetSink:
    def __init__(self, path: Path, event_registry: EventRegistry) -> None:
        import pyarrow.parquet as pq

        self.schema = export_schema(event_registry)
        self.writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")
        self.rows: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(fitted(row, self.schema))
        if len(self.rows) >= PARQUET_ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


class JsonLinesSink:
    def __init__(self, path: Path) -> None:
        self.file: IO[bytes] = path.open("wb")
        self.encoder = msgspec.json.Encoder()

    def write(self, row: dict[str, Any]) -> None:
        self.file.write(self.encoder.encode(row))
        self.file.write(b"\n")

    def close(self) -> None:
        self.file.close()


async def export_history(
    database: Database,
    out: Path,
    *,
    export_format: ExportFormat,
    query: ExportQuery,
    partitions: int,
    event_registry: EventRegistry = registry,
    progress: TextIO | None = None,
) -> ExportReport:
    """Write every archived event that `query` selects to `out`, one row per event.

    The archive is read with a cursor and rows are written as they come (Parquet a row group
    at a time), so memory does not grow with the history. Rows are in log order per partition.
    """
    selector = archive_filter(query, partitions)
    total = await database[EVENTS_COLLECTION].count_documents(selector)
    sink: ParquetSink | JsonLinesSink = (
        ParquetSink(out, event_registry) if export_format == "parquet" else JsonLinesSink(out)
    )
    bar = ProgressBar("export", total, stream=progress)
    rows = 0
    try:
        async for envelope in archived_events(database, query, partitions, event_registry):
            sink.write(row_of(envelope))
            rows += 1
            bar.advance()
    finally:
        sink.close()
        bar.finish()
    return ExportReport(rows=rows, path=out)


async def export_command(
    settings: StoreSettings,
    out: Path,
    *,
    export_format: ExportFormat,
    query: ExportQuery,
) -> int:
    """`eventhunting export --format parquet|jsonl [--since] [--until] [--event ID] OUT`."""
    from eventhunting.store_clients import connect_store

    clients = connect_store(settings)
    try:
        report = await export_history(
            clients.database,
            out,
            export_format=export_format,
            query=query,
            partitions=settings.sales.partitions,
        )
    finally:
        await clients.close()
    print(f"exported {report.rows} events to {report.path}", file=sys.stderr)
    return 0
