"""Reading and writing documents with snapshot isolation, write conflicts and unique keys."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bson import Regex

from eventhunting.standins.mongo import matching
from eventhunting.standins.mongo.errors import duplicate_key, write_conflict
from eventhunting.standins.mongo.storage import (
    Collection,
    Document,
    Index,
    Key,
    Record,
    Store,
    value_key,
)
from eventhunting.standins.mongo.transactions import Transaction


class MustWait(Exception):
    """A write outside transactions met a document an open transaction is writing."""

    def __init__(self, transaction: Transaction) -> None:
        super().__init__(f"waiting for {transaction!r}")
        self.transaction = transaction


@dataclass(slots=True)
class Change:
    collection: Collection
    key: Key
    before: Document | None
    after: Document | None


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list | Regex | re.Pattern)


def id_keys(query: Document) -> list[Key] | None:
    """The _id keys a query is limited to, when it names them by equality; else None."""
    if "_id" not in query:
        return None
    wanted = query["_id"]
    if isinstance(wanted, dict) and any(k.startswith("$") for k in wanted):
        if len(wanted) != 1:
            return None
        ((operator, argument),) = wanted.items()
        if operator == "$in" and isinstance(argument, list) and all(map(_is_scalar, argument)):
            return list(dict.fromkeys(value_key(a) for a in argument))
        if operator != "$eq" or not _is_scalar(argument):
            return None
        wanted = argument
    if isinstance(wanted, list | Regex | re.Pattern):
        return None
    return [value_key(wanted)]


def visible_collection(
    store: Store, database: str, name: str, transaction: Transaction | None
) -> Collection | None:
    """The collection a reader sees under this name: its transaction's own uncommitted one, or
    the committed one if it existed at the transaction's snapshot."""
    if transaction is not None:
        created = transaction.created_collections.get((database, name))
        if created is not None:
            return created
    collection = store.collection(database, name)
    if collection is None:
        return None
    if transaction is not None and collection.created_at > transaction.snapshot:
        return None
    return collection


def create_collection(
    store: Store,
    database: str,
    name: str,
    transaction: Transaction | None,
    options: Document | None = None,
) -> Collection:
    """Create a collection the caller does not see: at once, or at its transaction's commit.

    As in MongoDB 7.0, creating one in a transaction takes no lock: another client may create
    the same name meanwhile, and then the transaction's commit fails with a WriteConflict.
    """
    if transaction is None:
        collection = store.create_collection(database, name, options)
        collection.created_at = store.tick()
        return collection
    collection = Collection(database, name, options)
    transaction.created_collections[(database, name)] = collection
    return collection


def view(
    record: Record, key: Key, collection: Collection, transaction: Transaction | None
) -> Document | None:
    if transaction is None:
        return record.latest()
    writes = transaction.writes.get(collection)
    if writes is not None and key in writes:
        return writes[key]
    return record.as_of(transaction.snapshot)


def document_by_key(
    collection: Collection, key: Key, transaction: Transaction | None
) -> Document | None:
    record = collection.records.get(key)
    return None if record is None else view(record, key, collection, transaction)


def visible_documents(
    collection: Collection | None, transaction: Transaction | None
) -> list[tuple[Key, Document]]:
    if collection is None:
        return []
    if transaction is None:
        return [
            (key, document)
            for key, record in collection.records.items()
            if record.versions and (document := record.versions[-1][1]) is not None
        ]
    found = []
    for key, record in collection.records.items():
        document = view(record, key, collection, transaction)
        if document is not None:
            found.append((key, document))
    return found


def matching_documents(
    collection: Collection | None,
    query: Document,
    transaction: Transaction | None,
    limit: int = 0,
) -> list[tuple[Key, Document]]:
    """Documents the caller can see that match the query, in natural order."""
    if collection is None:
        matching.validate_query(query)
        return []
    keys = id_keys(query)
    if keys is not None:
        candidates: Iterable[tuple[Key, Document]] = (
            (key, document)
            for key in keys
            if (document := document_by_key(collection, key, transaction)) is not None
        )
    else:
        candidates = visible_documents(collection, transaction)
    found = []
    predicate = matching.compile_query(query)
    for key, document in candidates:
        if predicate(document):
            found.append((key, document))
            if limit and len(found) >= limit:
                break
    if not found and query:
        matching.validate_query(query)
    return found


def check_changes(changes: list[Change], transaction: Transaction | None) -> None:
    """Raise WriteConflict, DuplicateKey or MustWait for a batch of changes; change nothing."""
    for change in changes:
        record = change.collection.records.get(change.key)
        if record is not None:
            writer = record.writer
            if writer is not None and writer is not transaction and writer.active:
                if transaction is not None:
                    raise write_conflict()
                raise MustWait(writer)
            if transaction is not None and record.latest_timestamp() > transaction.snapshot:
                raise write_conflict()
        if change.before is None and change.after is not None:
            existing = (
                None if record is None else view(record, change.key, change.collection, transaction)
            )
            if existing is not None:
                raise duplicate_key(
                    change.collection.namespace, "_id_", {"_id": 1}, {"_id": change.after["_id"]}
                )
    by_collection: dict[Collection, list[Change]] = {}
    for change in changes:
        by_collection.setdefault(change.collection, []).append(change)
    for collection, collection_changes in by_collection.items():
        for index in collection.unique_indexes:
            _check_unique(collection, index, collection_changes, transaction)


def _check_unique(
    collection: Collection,
    index: Index,
    changes: list[Change],
    transaction: Transaction | None,
) -> None:
    in_batch = {change.key: change.after for change in changes}

    def still_holds(holder: Key, index_key: Key) -> bool:
        if holder in in_batch:
            document = in_batch[holder]
        else:
            document = document_by_key(collection, holder, transaction)
        return document is not None and index_key in index.keys_of(document)

    claimed: dict[Key, Key] = {}
    own_claims = transaction.claims.get(index, {}) if transaction is not None else {}
    for change in changes:
        old_keys = index.keys_of(change.before)
        for index_key, values in index.keys_of(change.after).items():
            if index_key in old_keys:
                continue
            duplicate = claimed.get(index_key, change.key) != change.key
            owner = index.pending.get(index_key)
            if not duplicate and owner is not None and owner is not transaction and owner.active:
                if transaction is not None:
                    raise write_conflict()
                raise MustWait(owner)
            holder = index.entries.get(index_key)
            if not duplicate and holder is not None and holder != change.key:
                duplicate = still_holds(holder, index_key)
            own = own_claims.get(index_key)
            if not duplicate and own is not None and own != change.key:
                duplicate = still_holds(own, index_key)
            if duplicate:
                raise duplicate_key(
                    collection.namespace, index.name, index.key_pattern, index.key_value(values)
                )
            claimed[index_key] = change.key


def _update_unique_entries(
    collection: Collection, changes: list[tuple[Key, Document | None, Document | None]]
) -> None:
    for index in collection.unique_indexes:
        for key, before, _ in changes:
            for index_key in index.keys_of(before):
                if index.entries.get(index_key) == key:
                    del index.entries[index_key]
        for key, _, after in changes:
            for index_key in index.keys_of(after):
                index.entries[index_key] = key


def insert_new(
    store: Store, collection: Collection, documents: Iterable[tuple[Key, Document]]
) -> int:
    """Commit documents outside any transaction, in order and at one timestamp, up to the first
    that is not plainly new; return how many were committed.

    Plainly new: no record holds its _id (no document, no deleted one a snapshot still sees,
    no transaction's write) and no unique index holds or has a transaction claiming one of its
    keys. The first other one is left to the caller: `check_changes` on it says whether it is a
    duplicate, must wait, or may be inserted after all. Nothing can run between the documents
    of a run, so committing it at one timestamp leaves what committing them one by one would.
    """
    records = collection.records
    unique_indexes = collection.unique_indexes
    timestamp = 0
    committed = 0
    for key, document in documents:
        if key in records:
            break
        if unique_indexes:
            index_keys = [index.keys_of(document) for index in unique_indexes]
            if any(
                index_key in index.entries or index_key in index.pending
                for index, keys in zip(unique_indexes, index_keys, strict=True)
                for index_key in keys
            ):
                break
            for index, keys in zip(unique_indexes, index_keys, strict=True):
                for index_key in keys:
                    index.entries[index_key] = key
        if not timestamp:
            timestamp = store.tick()
        records[key] = Record.committed(timestamp, document)
        committed += 1
    return committed


def apply_changes(store: Store, changes: list[Change], transaction: Transaction | None) -> None:
    """Commit the changes now, or buffer them in the transaction's write set."""
    if transaction is not None:
        for change in changes:
            collection = change.collection
            record = collection.records.get(change.key)
            if record is None:
                record = collection.records[change.key] = Record()
            record.writer = transaction
            transaction.writes.setdefault(collection, {})[change.key] = change.after
            for index in collection.unique_indexes:
                old_keys = index.keys_of(change.before)
                claims = transaction.claims.setdefault(index, {})
                for index_key in index.keys_of(change.after):
                    if index_key not in old_keys:
                        index.pending[index_key] = transaction
                        claims[index_key] = change.key
        return
    timestamp = store.tick()
    oldest = store.oldest_snapshot()
    by_collection: dict[Collection, list[tuple[Key, Document | None, Document | None]]] = {}
    for change in changes:
        collection = change.collection
        record = collection.records.get(change.key)
        if record is None:
            record = collection.records[change.key] = Record()
        record.versions.append((timestamp, change.after))
        by_collection.setdefault(collection, []).append((change.key, change.before, change.after))
        _prune(collection, change.key, record, oldest)
    for collection, applied in by_collection.items():
        _update_unique_entries(collection, applied)


def _prune(collection: Collection, key: Key, record: Record, oldest: int | None) -> None:
    if record.prune(oldest):
        del collection.records[key]
        collection.removable.discard(key)
    elif record.latest() is None:
        collection.removable.add(key)


def begin(store: Store, transaction: Transaction) -> None:
    store.active_transactions.add(transaction)


def creation_conflict(store: Store, transaction: Transaction) -> bool:
    """Whether a collection the transaction created now exists, created by someone else."""
    return any(
        store.collection(database, name) is not None
        for database, name in transaction.created_collections
    )


def commit(store: Store, transaction: Transaction) -> None:
    """Apply its writes and publish its collections (after checking creation_conflict)."""
    timestamp = store.tick()
    store.active_transactions.discard(transaction)
    oldest = store.oldest_snapshot()
    for collection in transaction.created_collections.values():
        collection.created_at = timestamp
        store.add_collection(collection)
    for collection, writes in transaction.writes.items():
        applied = []
        for key, after in writes.items():
            record = collection.records.get(key)
            if record is None:
                record = collection.records[key] = Record()
            applied.append((key, record.latest(), after))
            record.versions.append((timestamp, after))
            record.writer = None
            _prune(collection, key, record, oldest)
        _update_unique_entries(collection, applied)
    _let_go(transaction)
    transaction.state = "committed"
    transaction.finished.set()


def abort(store: Store, transaction: Transaction, reason: str) -> None:
    if not transaction.active:
        return
    store.active_transactions.discard(transaction)
    for collection, writes in transaction.writes.items():
        for key in writes:
            record = collection.records.get(key)
            if record is not None and record.writer is transaction:
                record.writer = None
                if not record.versions:
                    del collection.records[key]
    _let_go(transaction)  # its collections were never published: nothing else to undo
    transaction.state = "aborted"
    transaction.abort_reason = reason
    transaction.finished.set()


def _let_go(transaction: Transaction) -> None:
    """Release its unique key claims and drop its write set and collections.

    Its session keeps a finished transaction (which refers back to it) until the next one
    starts; what it wrote is in the store or discarded by then, and kept here it would keep
    a dropped collection alive, for as long as a garbage cycle does once the session ends.
    """
    for index, claims in transaction.claims.items():
        for index_key in claims:
            if index.pending.get(index_key) is transaction:
                del index.pending[index_key]
    transaction.claims.clear()
    transaction.writes.clear()
    transaction.created_collections.clear()
