"""In-memory multi-version storage: databases, collections, documents and unique indexes."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventhunting.standins.mongo import matching
from eventhunting.standins.mongo.values import Key, path_values, value_key

if TYPE_CHECKING:
    from eventhunting.standins.mongo.transactions import Transaction

Document = dict[str, Any]

__all__ = [
    "Collection",
    "Database",
    "Document",
    "Index",
    "Key",
    "Record",
    "Store",
    "path_values",
    "value_key",
]


class Record:
    """All versions of one document that a reader may still need, oldest first."""

    __slots__ = ("versions", "writer")

    def __init__(self) -> None:
        self.versions: list[tuple[int, Document | None]] = []
        self.writer: Transaction | None = None

    @classmethod
    def committed(cls, timestamp: int, document: Document) -> Record:
        record = cls()
        record.versions.append((timestamp, document))
        return record

    def latest(self) -> Document | None:
        versions = self.versions
        return versions[-1][1] if versions else None

    def latest_timestamp(self) -> int:
        return self.versions[-1][0] if self.versions else 0

    def as_of(self, timestamp: int) -> Document | None:
        for committed_at, document in reversed(self.versions):
            if committed_at <= timestamp:
                return document
        return None

    def prune(self, oldest_snapshot: int | None) -> bool:
        """Drop versions no reader needs; True when the record can be removed altogether."""
        versions = self.versions
        if len(versions) > 1:
            if oldest_snapshot is None:
                del versions[:-1]
            else:
                keep_from = len(versions) - 1
                while keep_from > 0 and versions[keep_from][0] > oldest_snapshot:
                    keep_from -= 1
                del versions[:keep_from]
        return (
            self.writer is None
            and len(versions) <= 1
            and (not versions or versions[0][1] is None)
            and (oldest_snapshot is None or not versions or versions[0][0] <= oldest_snapshot)
        )


@dataclass(eq=False)
class Index:
    """An index definition; unique ones also keep their committed keys for O(1) checks."""

    name: str
    key: list[tuple[str, Any]]
    unique: bool = False
    sparse: bool = False
    partial_filter: Document | None = None
    options: Document = field(default_factory=dict)
    entries: dict[Key, Key] = field(default_factory=dict)
    pending: dict[Key, Transaction] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.paths = [name.split(".") for name, _ in self.key]

    @property
    def key_pattern(self) -> Document:
        return dict(self.key)

    def keys_of(self, document: Document | None) -> dict[Key, tuple[Any, ...]]:
        """The index keys of a document (several when a field holds an array) and their values."""
        if document is None:
            return {}
        if self.partial_filter is not None and not matching.matches(self.partial_filter, document):
            return {}
        per_field: list[list[Any]] = []
        all_missing = True
        for path in self.paths:
            found = path_values(document, path)
            expanded: list[Any] = []
            for value in found:
                if isinstance(value, list):
                    expanded.extend(value if value else [None])
                else:
                    expanded.append(value)
            if expanded:
                all_missing = False
            else:
                expanded = [None]
            per_field.append(expanded)
        if self.sparse and all_missing:
            return {}
        keys: dict[Key, tuple[Any, ...]] = {}
        for combination in itertools.product(*per_field):
            keys[tuple(value_key(v) for v in combination)] = combination
        return keys

    def key_value(self, values: tuple[Any, ...]) -> Document:
        return {name: value for (name, _), value in zip(self.key, values, strict=True)}

    def describe(self) -> Document:
        described: Document = {"v": 2, "key": self.key_pattern, "name": self.name}
        if self.unique and self.name != "_id_":
            described["unique"] = True
        if self.sparse:
            described["sparse"] = True
        if self.partial_filter is not None:
            described["partialFilterExpression"] = self.partial_filter
        described.update(self.options)
        return described


class Collection:
    """Documents by _id key, in insertion order, with their indexes.

    `created_at` is the commit timestamp from which readers see the collection: a transaction
    whose snapshot is older does not see it (0: there from the start).
    """

    def __init__(self, database: str, name: str, options: Document | None = None) -> None:
        self.database = database
        self.name = name
        self.options: Document = options or {}
        self.uuid = uuid.uuid4()
        self.records: dict[Key, Record] = {}
        self._indexes: dict[str, Index] = {
            "_id_": Index(name="_id_", key=[("_id", 1)], unique=True)
        }
        # Every write checks and updates the unique indexes other than _id's (which `records`
        # is): listed once, again only when the indexes change.
        self.unique_indexes: tuple[Index, ...] = ()
        self.removable: set[Key] = set()
        self.created_at = 0

    @property
    def namespace(self) -> str:
        return f"{self.database}.{self.name}"

    @property
    def indexes(self) -> Mapping[str, Index]:
        return self._indexes

    def add_index(self, index: Index) -> None:
        self._indexes[index.name] = index
        self._list_unique_indexes()

    def drop_index(self, name: str) -> None:
        del self._indexes[name]
        self._list_unique_indexes()

    def take_contents_of(self, other: Collection) -> None:
        """Hold the documents and indexes of `other` (a renamed collection) as they are."""
        self.records, self._indexes, self.removable = other.records, other._indexes, other.removable
        self._list_unique_indexes()

    def _list_unique_indexes(self) -> None:
        self.unique_indexes = tuple(
            index for name, index in self._indexes.items() if index.unique and name != "_id_"
        )

    def latest_documents(self) -> Iterator[Document]:
        for record in self.records.values():
            if record.versions:
                document = record.versions[-1][1]
                if document is not None:
                    yield document


class Database:
    def __init__(self, name: str) -> None:
        self.name = name
        self.collections: dict[str, Collection] = {}


class Store:
    """Every database, the commit clock, and the transactions whose snapshots pin old versions."""

    def __init__(self) -> None:
        self.databases: dict[str, Database] = {}
        self.clock = 1
        self.active_transactions: set[Transaction] = set()
        self.changes = 0

    def tick(self) -> int:
        self.clock += 1
        self.changes += 1
        return self.clock

    def oldest_snapshot(self) -> int | None:
        if not self.active_transactions:
            return None
        return min(transaction.snapshot for transaction in self.active_transactions)

    def collection(self, database: str, name: str) -> Collection | None:
        found = self.databases.get(database)
        return found.collections.get(name) if found is not None else None

    def create_collection(
        self, database: str, name: str, options: Document | None = None
    ) -> Collection:
        found = self.databases.get(database)
        if found is None:
            found = self.databases[database] = Database(database)
        collection = found.collections.get(name)
        if collection is None:
            collection = found.collections[name] = Collection(database, name, options)
            self.changes += 1
        return collection

    def add_collection(self, collection: Collection) -> None:
        """Make a collection created elsewhere (in a transaction) part of the store."""
        found = self.databases.get(collection.database)
        if found is None:
            found = self.databases[collection.database] = Database(collection.database)
        found.collections[collection.name] = collection
        self.changes += 1

    def drop_collection(self, database: str, name: str) -> bool:
        found = self.databases.get(database)
        if found is None or name not in found.collections:
            return False
        del found.collections[name]
        if not found.collections:
            del self.databases[database]
        self.changes += 1
        return True

    def drop_database(self, database: str) -> None:
        if self.databases.pop(database, None) is not None:
            self.changes += 1

    def collect_garbage(self) -> None:
        """Remove deleted documents that no open snapshot can still see."""
        oldest = self.oldest_snapshot()
        for database in self.databases.values():
            for collection in database.collections.values():
                if not collection.removable:
                    continue
                still: set[Key] = set()
                for key in collection.removable:
                    record = collection.records.get(key)
                    if record is None:
                        continue
                    if record.prune(oldest):
                        del collection.records[key]
                    elif record.latest() is None:
                        still.add(key)
                collection.removable = still
