"""Saving the whole store to one file of BSON documents, and loading it back."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument

from eventhunting.standins.mongo.commands import build_unique_entries, index_from_spec
from eventhunting.standins.mongo.storage import Document, Index, Record, Store, value_key

FORMAT = "eventhunting-mongo-standin"
VERSION = 1
CHUNK_BYTES = 4 * 1024 * 1024

Snapshot = list[tuple[str, str, Document, list[Document], list[Document]]]


def capture(store: Store) -> Snapshot:
    """Committed state by reference; cheap, because stored documents are never mutated."""
    captured: Snapshot = []
    for database in store.databases.values():
        for collection in database.collections.values():
            captured.append(
                (
                    database.name,
                    collection.name,
                    collection.options,
                    [
                        index.describe()
                        for name, index in collection.indexes.items()
                        if name != "_id_"
                    ],
                    list(collection.latest_documents()),
                )
            )
    return captured


def write(path: Path, snapshot: Snapshot) -> None:
    """Write atomically: a temporary file in the same folder, fsynced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(bson.encode({"format": FORMAT, "version": VERSION}))
            for database, name, options, indexes, documents in snapshot:
                out.write(
                    bson.encode(
                        {
                            "kind": "collection",
                            "db": database,
                            "name": name,
                            "options": options,
                            "indexes": indexes,
                        }
                    )
                )
                chunk: list[bytes] = []
                size = 0
                for document in documents:
                    encoded = bson.encode(document)
                    chunk.append(encoded)
                    size += len(encoded)
                    if size >= CHUNK_BYTES:
                        out.write(_documents_record(database, name, chunk))
                        chunk, size = [], 0
                if chunk:
                    out.write(_documents_record(database, name, chunk))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _documents_record(database: str, name: str, encoded: list[bytes]) -> bytes:
    return bson.encode(
        {
            "kind": "documents",
            "db": database,
            "name": name,
            "docs": [RawBSONDocument(e) for e in encoded],
        }
    )


def load(path: Path, store: Store) -> int:
    """Load a saved file into an empty store; return the number of documents."""
    loaded = 0
    with path.open("rb") as source:
        records = bson.decode_file_iter(source)
        header: Any = next(records, None)
        if header is None:
            return 0
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ValueError(f"{path} is not a {FORMAT} v{VERSION} data file")
        timestamp = store.tick()
        for record in records:
            collection = store.create_collection(record["db"], record["name"])
            if record["kind"] == "collection":
                collection.options = record.get("options") or {}
                for spec in record.get("indexes") or []:
                    index: Index = index_from_spec(spec)
                    collection.add_index(index)
            elif record["kind"] == "documents":
                for document in record["docs"]:
                    collection.records[value_key(document["_id"])] = Record.committed(
                        timestamp, document
                    )
                    loaded += 1
        for database in store.databases.values():
            for collection in database.collections.values():
                for index in collection.unique_indexes:
                    build_unique_entries(collection, index)
    return loaded
