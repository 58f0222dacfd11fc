"""The database commands the stand-in answers, one handler each."""

from __future__ import annotations

import asyncio
import datetime
import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import bson
from bson import Binary, Int64, ObjectId, Regex
from bson.raw_bson import RawBSONDocument

from eventhunting.standins.mongo import matching, snapshots
from eventhunting.standins.mongo.errors import (
    BAD_VALUE,
    CANNOT_CREATE_INDEX,
    COMMAND_NOT_FOUND,
    CURSOR_NOT_FOUND,
    FAILED_TO_PARSE,
    ILLEGAL_OPERATION,
    IMMUTABLE_FIELD,
    INDEX_KEY_SPECS_CONFLICT,
    INDEX_NOT_FOUND,
    INDEX_OPTIONS_CONFLICT,
    INVALID_NAMESPACE,
    INVALID_OPTIONS,
    MAX_TIME_MS_EXPIRED,
    NAMESPACE_EXISTS,
    NAMESPACE_NOT_FOUND,
    NO_SUCH_TRANSACTION,
    OPERATION_NOT_SUPPORTED_IN_TRANSACTION,
    TRANSACTION_COMMITTED,
    TRANSACTION_TOO_OLD,
    TYPE_MISMATCH,
    CommandError,
    WriteFailure,
    write_conflict,
)
from eventhunting.standins.mongo.snapshots import Change, MustWait
from eventhunting.standins.mongo.state import Connection, ServerState
from eventhunting.standins.mongo.storage import (
    Collection,
    Document,
    Index,
    Key,
    path_values,
    value_key,
)
from eventhunting.standins.mongo.transactions import Session, Transaction

SERVER_VERSION = "7.0.0"
MAX_WIRE_VERSION = 21
MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE_BYTES = 48_000_000
MAX_WRITE_BATCH_SIZE = 100_000
LOGICAL_SESSION_TIMEOUT_MINUTES = 30
DEFAULT_FIRST_BATCH_SIZE = 101
ELECTION_ID = ObjectId("7fffffff0000000000000001")

# Fields any command may carry that are not options of the command itself.
GENERIC_FIELDS = frozenset(
    {
        "$db",
        "lsid",
        "txnNumber",
        "autocommit",
        "startTransaction",
        "$clusterTime",
        "$readPreference",
        "readConcern",
        "writeConcern",
        "comment",
        "maxTimeMS",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "$audit",
        "$client",
        "stmtId",
        "stmtIds",
    }
)

RETRYABLE_WRITE_COMMANDS = frozenset({"insert", "update", "delete", "findAndModify"})
TRANSACTION_COMMANDS = frozenset(
    {
        "find",
        "getMore",
        "killCursors",
        "insert",
        "update",
        "delete",
        "findAndModify",
        "aggregate",
        "distinct",
        "commitTransaction",
        "abortTransaction",
        "create",
        "createIndexes",
        "bulkWrite",
    }
)


@dataclass
class CommandContext:
    state: ServerState
    connection: Connection
    database: str
    command: dict[str, Any]
    name: str
    session: Session | None = None
    transaction: Transaction | None = None
    retryable_txn_number: int | None = None
    cached_reply: dict[str, Any] | None = None
    deadline: float | None = None

    @property
    def store(self) -> Any:
        return self.state.store

    async def wait_for(self, transaction: Transaction) -> None:
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        try:
            await asyncio.wait_for(transaction.finished.wait(), timeout)
        except TimeoutError:
            raise CommandError(MAX_TIME_MS_EXPIRED, "operation exceeded time limit") from None


Handler = Callable[[CommandContext], Awaitable[dict[str, Any]]]
COMMANDS: dict[str, Handler] = {}


def command(*names: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for name in names:
            COMMANDS[name] = handler
        return handler

    return register


# ---------------------------------------------------------------- sessions and transactions


def resolve_session(ctx: CommandContext) -> None:
    """Attach the command's logical session and transaction, following MongoDB's rules."""
    cmd = ctx.command
    lsid = cmd.get("lsid")
    txn_number = cmd.get("txnNumber")
    autocommit = cmd.get("autocommit")
    if lsid is None:
        if txn_number is not None:
            raise CommandError(ILLEGAL_OPERATION, "Transaction number requires a session ID")
        return
    if not isinstance(lsid, dict):
        raise CommandError(TYPE_MISMATCH, "lsid must be an object")
    session = ctx.state.sessions.get(lsid)
    ctx.session = session
    if autocommit is None:
        if cmd.get("startTransaction") is not None:
            raise CommandError(INVALID_OPTIONS, "startTransaction requires autocommit: false")
        if txn_number is None:
            return
        txn_number = int(txn_number)
        if ctx.name not in RETRYABLE_WRITE_COMMANDS:
            raise CommandError(
                ILLEGAL_OPERATION,
                f"txnNumber may only be provided for multi-document transactions and retryable "
                f"write commands. autocommit:false was not provided, and {ctx.name} is not a "
                f"retryable write command.",
            )
        if txn_number < session.highest_txn_number:
            raise CommandError(
                TRANSACTION_TOO_OLD,
                f"Cannot start transaction {txn_number} on session because a newer transaction "
                f"{session.highest_txn_number} has already started",
            )
        if txn_number > session.highest_txn_number:
            ctx.state.abort_open_transaction(session, "a retryable write started on the session")
            session.highest_txn_number = txn_number
        elif session.retried_write is not None and session.retried_write[0] == txn_number:
            ctx.cached_reply = session.retried_write[1]
        ctx.retryable_txn_number = txn_number
        return
    if autocommit is not False:
        raise CommandError(INVALID_OPTIONS, "autocommit must be false when it is given")
    if txn_number is None:
        raise CommandError(BAD_VALUE, "'autocommit' field requires a transaction number")
    txn_number = int(txn_number)
    if ctx.name not in TRANSACTION_COMMANDS:
        raise CommandError(
            OPERATION_NOT_SUPPORTED_IN_TRANSACTION,
            f"Cannot run '{ctx.name}' in a multi-document transaction.",
        )
    if cmd.get("startTransaction"):
        if txn_number <= session.highest_txn_number:
            raise CommandError(
                TRANSACTION_TOO_OLD,
                f"Cannot start transaction {txn_number} on session because a transaction "
                f"{session.highest_txn_number} has already started",
            )
        session.highest_txn_number = txn_number
        ctx.transaction = ctx.state.start_transaction(session, txn_number)
        return
    transaction = session.transaction
    if transaction is None or transaction.number != txn_number:
        if txn_number < session.highest_txn_number:
            raise CommandError(
                TRANSACTION_TOO_OLD, f"txnNumber {txn_number} is older than the session's"
            )
        raise CommandError(
            NO_SUCH_TRANSACTION,
            f"Given transaction number {txn_number} does not match any in-progress transactions.",
        )
    if transaction.state == "committed":
        if ctx.name == "commitTransaction":
            ctx.transaction = transaction
            return
        raise CommandError(
            TRANSACTION_COMMITTED,
            f"Transaction with {{ txnNumber: {txn_number} }} has been committed.",
        )
    if transaction.state == "aborted":
        reason = f" ({transaction.abort_reason})" if transaction.abort_reason else ""
        raise CommandError(
            NO_SUCH_TRANSACTION,
            f"Transaction with {{ txnNumber: {txn_number} }} has been aborted.{reason}",
        )
    ctx.transaction = transaction


@command("commitTransaction")
async def commit_transaction(ctx: CommandContext) -> dict[str, Any]:
    transaction = _require_transaction(ctx)
    if transaction.active:
        if snapshots.creation_conflict(ctx.state.store, transaction):
            snapshots.abort(
                ctx.state.store, transaction, "another client created a collection it created"
            )
            raise write_conflict()
        snapshots.commit(ctx.state.store, transaction)
    return {}


@command("abortTransaction")
async def abort_transaction(ctx: CommandContext) -> dict[str, Any]:
    transaction = _require_transaction(ctx)
    snapshots.abort(ctx.state.store, transaction, "aborted by the client")
    return {}


def _require_transaction(ctx: CommandContext) -> Transaction:
    if ctx.database != "admin":
        raise CommandError(
            ILLEGAL_OPERATION, f"{ctx.name} may only be run against the admin database."
        )
    if ctx.transaction is None:
        raise CommandError(
            NO_SUCH_TRANSACTION,
            "Given transaction number does not match any in-progress transactions.",
        )
    return ctx.transaction


# ---------------------------------------------------------------- handshake and server info


def topology_version(state: ServerState) -> dict[str, Any]:
    """The replica set's topology never changes: the same process, counter 0."""
    return {"processId": state.process_id, "counter": Int64(0)}


def _hello_reply(ctx: CommandContext, primary_field: str) -> dict[str, Any]:
    me = f"{ctx.connection.local_host}:{ctx.connection.local_port}"
    return {
        "helloOk": True,
        primary_field: True,
        "topologyVersion": topology_version(ctx.state),
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "maxMessageSizeBytes": MAX_MESSAGE_SIZE_BYTES,
        "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
        "localTime": datetime.datetime.now(datetime.UTC),
        "logicalSessionTimeoutMinutes": LOGICAL_SESSION_TIMEOUT_MINUTES,
        "connectionId": ctx.connection.id,
        "minWireVersion": 0,
        "maxWireVersion": MAX_WIRE_VERSION,
        "readOnly": False,
        "setName": ctx.state.settings.replica_set_name,
        "setVersion": 1,
        "electionId": ELECTION_ID,
        "hosts": [me],
        "primary": me,
        "me": me,
        "secondary": False,
    }


async def _await_topology_change(ctx: CommandContext) -> None:
    """An awaitable hello returns only when the topology changes or maxAwaitTimeMS passes."""
    known = ctx.command.get("topologyVersion")
    wait_ms = ctx.command.get("maxAwaitTimeMS")
    if not isinstance(known, dict) or wait_ms is None:
        return
    if known.get("processId") != ctx.state.process_id or known.get("counter") != 0:
        return
    await asyncio.sleep(float(wait_ms) / 1000)


@command("hello")
async def hello(ctx: CommandContext) -> dict[str, Any]:
    _remember_client(ctx)
    await _await_topology_change(ctx)
    return _hello_reply(ctx, "isWritablePrimary")


@command("isMaster", "ismaster")
async def is_master(ctx: CommandContext) -> dict[str, Any]:
    _remember_client(ctx)
    await _await_topology_change(ctx)
    return _hello_reply(ctx, "ismaster")


def _remember_client(ctx: CommandContext) -> None:
    client = ctx.command.get("client")
    if isinstance(client, dict):
        application = client.get("application")
        if isinstance(application, dict) and "name" in application:
            ctx.connection.app_name = str(application["name"])


@command("ping")
async def ping(ctx: CommandContext) -> dict[str, Any]:
    return {}


@command("buildInfo", "buildinfo")
async def build_info(ctx: CommandContext) -> dict[str, Any]:
    return {
        "version": SERVER_VERSION,
        "versionArray": [7, 0, 0, 0],
        "gitVersion": "eventhunting-standin",
        "bits": 64,
        "debug": False,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "storageEngines": ["standin"],
        "javascriptEngine": "none",
        "modules": [],
        "eventhuntingStandin": True,
    }


@command("serverStatus")
async def server_status(ctx: CommandContext) -> dict[str, Any]:
    return {
        "host": f"{ctx.connection.local_host}:{ctx.connection.local_port}",
        "version": SERVER_VERSION,
        "process": "mongod",
        "uptime": time.monotonic() - ctx.state.started_at,
        "localTime": datetime.datetime.now(datetime.UTC),
        "connections": {"current": ctx.state.open_connections},
        "transactions": {"currentOpen": len(ctx.state.store.active_transactions)},
        "eventhuntingStandin": True,
    }


@command("whatsmyuri")
async def whats_my_uri(ctx: CommandContext) -> dict[str, Any]:
    return {"you": ctx.connection.peer}


@command("connectionStatus")
async def connection_status(ctx: CommandContext) -> dict[str, Any]:
    return {"authInfo": {"authenticatedUsers": [], "authenticatedUserRoles": []}}


@command("getParameter")
async def get_parameter(ctx: CommandContext) -> dict[str, Any]:
    lifetime = ctx.state.settings.transaction_lifetime_limit_seconds
    return {
        "transactionLifetimeLimitSeconds": int(lifetime) if lifetime.is_integer() else lifetime,
        "featureCompatibilityVersion": {"version": "7.0"},
    }


@command("setParameter")
async def set_parameter(ctx: CommandContext) -> dict[str, Any]:
    _require_admin(ctx)
    if "transactionLifetimeLimitSeconds" not in ctx.command:
        raise CommandError(
            INVALID_OPTIONS, "the stand-in only sets transactionLifetimeLimitSeconds"
        )
    value = ctx.command["transactionLifetimeLimitSeconds"]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
        raise CommandError(BAD_VALUE, "transactionLifetimeLimitSeconds must be at least 1")
    was = ctx.state.settings.transaction_lifetime_limit_seconds
    ctx.state.settings.transaction_lifetime_limit_seconds = float(value)
    return {"was": int(was) if was.is_integer() else was}


@command("configureFailPoint")
async def configure_fail_point(ctx: CommandContext) -> dict[str, Any]:
    _require_admin(ctx)
    name = ctx.command["configureFailPoint"]
    if name != "failCommand":
        raise CommandError(BAD_VALUE, f"the stand-in has no failpoint named {name!r}")
    data = ctx.command.get("data") or {}
    count = ctx.state.fail_command.configure(ctx.command.get("mode"), data)
    return {"count": count}


def _require_admin(ctx: CommandContext) -> None:
    if ctx.database != "admin":
        raise CommandError(13, f"{ctx.name} may only be run against the admin database.")


@command("endSessions")
async def end_sessions(ctx: CommandContext) -> dict[str, Any]:
    for lsid in ctx.command.get("endSessions") or []:
        if isinstance(lsid, dict):
            ctx.state.end_session(lsid)
    return {}


@command("refreshSessions", "startSession")
async def refresh_sessions(ctx: CommandContext) -> dict[str, Any]:
    return {}


@command("killAllSessions")
async def kill_all_sessions(ctx: CommandContext) -> dict[str, Any]:
    for session in list(ctx.state.sessions.by_key.values()):
        ctx.state.end_session(session.lsid)
    return {}


# ---------------------------------------------------------------- databases and collections


def _collection_name(ctx: CommandContext) -> str:
    name = ctx.command[ctx.name]
    if not isinstance(name, str):
        raise CommandError(
            INVALID_NAMESPACE,
            f"collection name has invalid type {type(name).__name__}",
        )
    if not name or "$" in name or "\x00" in name:
        raise CommandError(INVALID_NAMESPACE, f"Invalid collection name: {name!r}")
    _check_database_name(ctx.database)
    return name


def _check_database_name(name: str) -> None:
    if not name or any(c in name for c in '/\\. "$\x00'):
        raise CommandError(INVALID_NAMESPACE, f"Invalid database name: '{name}'")


def _existing(ctx: CommandContext, name: str) -> Collection | None:
    return snapshots.visible_collection(ctx.state.store, ctx.database, name, ctx.transaction)


def _for_writing(ctx: CommandContext, name: str) -> Collection:
    collection = _existing(ctx, name)
    if collection is None:
        collection = snapshots.create_collection(
            ctx.state.store, ctx.database, name, ctx.transaction
        )
    return collection


@command("create")
async def create(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    if _existing(ctx, name) is not None:
        raise CommandError(NAMESPACE_EXISTS, f"Collection {ctx.database}.{name} already exists.")
    options = {k: v for k, v in ctx.command.items() if k != "create" and k not in GENERIC_FIELDS}
    snapshots.create_collection(ctx.state.store, ctx.database, name, ctx.transaction, options)
    return {}


def _abort_transactions_on(ctx: CommandContext, collections: list[Collection]) -> None:
    doomed = set(collections)
    for transaction in list(ctx.state.store.active_transactions):
        if doomed.intersection(transaction.writes):
            snapshots.abort(ctx.state.store, transaction, "a collection it wrote was dropped")


@command("drop")
async def drop(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    collection = _existing(ctx, name)
    if collection is None:
        return {}
    _abort_transactions_on(ctx, [collection])
    ctx.state.store.drop_collection(ctx.database, name)
    return {"nIndexesWas": len(collection.indexes), "ns": collection.namespace}


@command("dropDatabase")
async def drop_database(ctx: CommandContext) -> dict[str, Any]:
    _check_database_name(ctx.database)
    database = ctx.state.store.databases.get(ctx.database)
    if database is not None:
        _abort_transactions_on(ctx, list(database.collections.values()))
        ctx.state.store.drop_database(ctx.database)
    return {"dropped": ctx.database}


@command("renameCollection")
async def rename_collection(ctx: CommandContext) -> dict[str, Any]:
    _require_admin(ctx)
    source, target = ctx.command["renameCollection"], ctx.command.get("to")
    if not isinstance(source, str) or not isinstance(target, str) or "." not in target:
        raise CommandError(INVALID_NAMESPACE, "renameCollection needs 'db.coll' names")
    source_db, source_name = source.split(".", 1)
    target_db, target_name = target.split(".", 1)
    store = ctx.state.store
    collection = store.collection(source_db, source_name)
    if collection is None:
        raise CommandError(NAMESPACE_NOT_FOUND, "source namespace does not exist")
    existing = store.collection(target_db, target_name)
    if existing is not None:
        if not ctx.command.get("dropTarget"):
            raise CommandError(NAMESPACE_EXISTS, "target namespace exists")
        _abort_transactions_on(ctx, [existing])
        store.drop_collection(target_db, target_name)
    _abort_transactions_on(ctx, [collection])
    store.drop_collection(source_db, source_name)
    renamed = snapshots.create_collection(store, target_db, target_name, None, collection.options)
    renamed.take_contents_of(collection)
    return {}


@command("listDatabases")
async def list_databases(ctx: CommandContext) -> dict[str, Any]:
    entries = []
    for name in sorted(ctx.state.store.databases):
        database = ctx.state.store.databases[name]
        size = sum(len(c.records) for c in database.collections.values()) * 512
        entries.append({"name": name, "sizeOnDisk": size, "empty": size == 0})
    query = ctx.command.get("filter")
    if query:
        entries = [e for e in entries if matching.matches(query, e)]
    if ctx.command.get("nameOnly"):
        return {"databases": [{"name": e["name"]} for e in entries]}
    return {"databases": entries, "totalSize": sum(e["sizeOnDisk"] for e in entries)}


@command("listCollections")
async def list_collections(ctx: CommandContext) -> dict[str, Any]:
    _check_database_name(ctx.database)
    database = ctx.state.store.databases.get(ctx.database)
    entries: list[Document] = []
    for collection in database.collections.values() if database is not None else []:
        entries.append(
            {
                "name": collection.name,
                "type": "collection",
                "options": collection.options,
                "info": {"readOnly": False, "uuid": Binary.from_uuid(collection.uuid)},
                "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            }
        )
    query = ctx.command.get("filter")
    if query:
        entries = [e for e in entries if matching.matches(query, e)]
    if ctx.command.get("nameOnly"):
        entries = [{"name": e["name"], "type": e["type"]} for e in entries]
    return _cursor_reply(ctx, f"{ctx.database}.$cmd.listCollections", entries, first=True)


# ---------------------------------------------------------------- cursors


def _batch(documents: list[Document], start: int, batch_size: int | None) -> tuple[list[Any], int]:
    """Documents from start, at most batch_size of them and about 16 MiB in all."""
    batch: list[Any] = []
    total = 0
    position = start
    end = len(documents) if not batch_size else min(len(documents), start + batch_size)
    while position < end:
        raw = RawBSONDocument(bson.encode(documents[position]))
        if batch and total + len(raw.raw) > MAX_BSON_OBJECT_SIZE:
            break
        batch.append(raw)
        total += len(raw.raw)
        position += 1
    return batch, position


def _cursor_reply(
    ctx: CommandContext,
    namespace: str,
    documents: list[Document],
    *,
    first: bool,
    batch_size: int | None = None,
    single_batch: bool = False,
) -> dict[str, Any]:
    options = (
        ctx.command.get("cursor")
        if ctx.name in ("aggregate", "listCollections", "listIndexes")
        else None
    )
    if batch_size is None and isinstance(options, dict):
        batch_size = options.get("batchSize")
    if batch_size is None:
        batch_size = DEFAULT_FIRST_BATCH_SIZE
    if batch_size < 0:
        raise CommandError(BAD_VALUE, "batchSize must be non-negative")
    if batch_size == 0:
        batch: list[Any] = []
        position = 0
    else:
        batch, position = _batch(documents, 0, batch_size)
    cursor_id = 0
    if position < len(documents) and not single_batch:
        cursor = ctx.state.open_cursor(namespace, documents, position, ctx.session)
        cursor_id = cursor.id
    return {"cursor": {"firstBatch": batch, "id": Int64(cursor_id), "ns": namespace}}


@command("getMore")
async def get_more(ctx: CommandContext) -> dict[str, Any]:
    cursor_id = ctx.command["getMore"]
    cursor = ctx.state.cursors.get(int(cursor_id))
    collection = ctx.command.get("collection")
    if cursor is None or cursor.namespace.split(".", 1)[1] != collection:
        raise CommandError(CURSOR_NOT_FOUND, f"cursor id {cursor_id} not found")
    batch_size = ctx.command.get("batchSize")
    batch, cursor.position = _batch(cursor.documents, cursor.position, batch_size or None)
    cursor.last_used = time.monotonic()
    if cursor.position >= len(cursor.documents):
        ctx.state.close_cursor(cursor.id)
        cursor_id = 0
    return {"cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": cursor.namespace}}


@command("killCursors")
async def kill_cursors(ctx: CommandContext) -> dict[str, Any]:
    killed: list[Any] = []
    missing: list[Any] = []
    for cursor_id in ctx.command.get("cursors") or []:
        (killed if ctx.state.close_cursor(int(cursor_id)) else missing).append(cursor_id)
    return {
        "cursorsKilled": killed,
        "cursorsNotFound": missing,
        "cursorsAlive": [],
        "cursorsUnknown": [],
    }


# ---------------------------------------------------------------- reads


def _document_option(ctx: CommandContext, name: str) -> Document | None:
    value = ctx.command.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CommandError(
            TYPE_MISMATCH,
            f"BSON field '{ctx.name}.{name}' is the wrong type '{type(value).__name__}', "
            f"expected type 'object'",
        )
    return value


def _integer_option(ctx: CommandContext, name: str, default: int = 0) -> int:
    value = ctx.command.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(
            TYPE_MISMATCH, f"BSON field '{ctx.name}.{name}' is the wrong type, expected a number"
        )
    return int(value)


def _validate_sort(sort: Document | None) -> None:
    for field_name, direction in (sort or {}).items():
        if isinstance(direction, dict):
            continue
        if isinstance(direction, bool) or direction not in (1, -1):
            raise CommandError(
                BAD_VALUE,
                "$sort key ordering must be 1 (for ascending) or -1 (for descending): "
                f"{field_name}",
            )


@command("find")
async def find(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    query = _document_option(ctx, "filter") or {}
    sort = _document_option(ctx, "sort")
    _validate_sort(sort)
    projection = _document_option(ctx, "projection")
    skip = _integer_option(ctx, "skip")
    limit = _integer_option(ctx, "limit")
    batch_size = ctx.command.get("batchSize")
    single_batch = bool(ctx.command.get("singleBatch", False))
    if skip < 0:
        raise CommandError(BAD_VALUE, "skip value must be non-negative")
    if limit < 0:
        limit, single_batch = -limit, True
    collection = _existing(ctx, name)
    scan_limit = skip + limit if limit and not sort else 0
    documents = [
        d for _, d in snapshots.matching_documents(collection, query, ctx.transaction, scan_limit)
    ]
    documents = matching.sort_documents(documents, sort)
    if skip:
        documents = documents[skip:]
    if limit:
        documents = documents[:limit]
    if projection:
        documents = [
            p for d in documents if (p := matching.project(d, projection, query)) is not None
        ]
    if limit and batch_size and batch_size >= limit:
        single_batch = True
    return _cursor_reply(
        ctx,
        f"{ctx.database}.{name}",
        documents,
        first=True,
        batch_size=batch_size,
        single_batch=single_batch,
    )


@command("count")
async def count(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    query = _document_option(ctx, "query") or {}
    skip = _integer_option(ctx, "skip")
    limit = abs(_integer_option(ctx, "limit"))
    found = len(snapshots.matching_documents(_existing(ctx, name), query, ctx.transaction))
    found = max(0, found - skip)
    if limit:
        found = min(found, limit)
    return {"n": found}


@command("distinct")
async def distinct(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    key = ctx.command.get("key")
    if not isinstance(key, str) or not key:
        raise CommandError(TYPE_MISMATCH, "BSON field 'distinct.key' is missing or not a string")
    query = _document_option(ctx, "query") or {}
    values: dict[Any, Any] = {}
    path = key.split(".")
    for _, document in snapshots.matching_documents(_existing(ctx, name), query, ctx.transaction):
        for value in path_values(document, path):
            for element in value if isinstance(value, list) else [value]:
                values.setdefault(value_key(element), element)
    return {"values": list(values.values())}


@command("aggregate")
async def aggregate(ctx: CommandContext) -> dict[str, Any]:
    target = ctx.command["aggregate"]
    if not isinstance(target, str):
        raise CommandError(NOT_SUPPORTED_DB_AGGREGATE, "the stand-in only aggregates collections")
    name = _collection_name(ctx)
    pipeline = ctx.command.get("pipeline")
    if not isinstance(pipeline, list):
        raise CommandError(TYPE_MISMATCH, "'pipeline' option must be specified as an array")
    if ctx.command.get("explain"):
        raise CommandError(COMMAND_NOT_FOUND, "the stand-in does not explain aggregations")
    if "cursor" not in ctx.command:
        raise CommandError(FAILED_TO_PARSE, "The 'cursor' option is required")
    collection = _existing(ctx, name)
    stages = list(pipeline)
    query: Document = {}
    if stages and isinstance(stages[0], dict) and list(stages[0]) == ["$match"]:
        query = stages.pop(0)["$match"]
        if not isinstance(query, dict):
            raise CommandError(BAD_VALUE, "the match filter must be an expression in an object")
    documents = [d for _, d in snapshots.matching_documents(collection, query, ctx.transaction)]

    def resolve(foreign: str) -> list[Document]:
        other = _existing(ctx, foreign)
        return [d for _, d in snapshots.visible_documents(other, ctx.transaction)]

    results = matching.run_pipeline(documents, stages, ctx.database, resolve)
    return _cursor_reply(ctx, f"{ctx.database}.{name}", results, first=True)


NOT_SUPPORTED_DB_AGGREGATE = 238


# ---------------------------------------------------------------- writes


async def _write(ctx: CommandContext, compute: Callable[[], list[Change]]) -> list[Change]:
    """Compute a statement's changes and apply them atomically, waiting out open transactions."""
    while True:
        changes = compute()
        try:
            snapshots.check_changes(changes, ctx.transaction)
        except MustWait as blocked:
            await ctx.wait_for(blocked.transaction)
            continue
        snapshots.apply_changes(ctx.state.store, changes, ctx.transaction)
        return changes


async def _write_changes(ctx: CommandContext, changes: list[Change]) -> None:
    """Apply changes that do not depend on what they meet (an insert's), waiting out open
    transactions."""
    await _write(ctx, lambda: changes)


def _statements(ctx: CommandContext, field_name: str) -> list[Any]:
    statements = ctx.command.get(field_name)
    if not isinstance(statements, list):
        raise CommandError(
            TYPE_MISMATCH, f"BSON field '{ctx.name}.{field_name}' is missing or not an array"
        )
    if len(statements) > MAX_WRITE_BATCH_SIZE:
        raise CommandError(INVALID_OPTIONS, "Write batch sizes must be between 1 and 100000")
    return statements


def _check_id(identifier: Any) -> None:
    if isinstance(identifier, list):
        raise WriteFailure(BAD_VALUE, "The '_id' value cannot be of type array")
    if isinstance(identifier, Regex):
        raise WriteFailure(BAD_VALUE, "can't use a regex for _id")


def _with_id(document: Document, identifier: Any) -> Document:
    if "_id" in document and next(iter(document)) == "_id":
        return document
    ordered = {"_id": document.get("_id", identifier)}
    ordered.update((k, v) for k, v in document.items() if k != "_id")
    return ordered


@command("insert")
async def insert(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    documents = [_new_document(document) for document in _statements(ctx, "documents")]
    ordered = bool(ctx.command.get("ordered", True))
    collection = _for_writing(ctx, name)
    inserted = 0
    write_errors = []
    position = 0
    while position < len(documents):
        if ctx.transaction is None:
            committed = snapshots.insert_new(
                ctx.state.store, collection, _leading_documents(documents, position)
            )
            inserted += committed
            position += committed
            if position == len(documents):
                break
        # A document the run stopped at, or any in a transaction: checked one at a time.
        document = documents[position]
        try:
            if isinstance(document, WriteFailure):
                raise document
            key, value = document
            await _write_changes(ctx, [Change(collection, key, None, value)])
            inserted += 1
        except WriteFailure as failure:
            write_errors.append(failure.write_error(position))
            if ordered:
                break
        position += 1
    reply: dict[str, Any] = {"n": inserted}
    if write_errors:
        reply["writeErrors"] = write_errors
    return reply


def _new_document(document: Any) -> tuple[Key, Document] | WriteFailure:
    """A document to insert with its _id first, and its _id key; or why it cannot be."""
    if not isinstance(document, dict):
        return WriteFailure(TYPE_MISMATCH, "documents must be objects")
    # An ObjectId only for a document without an _id (making one costs more than the rest
    # of an insert).
    document = _with_id(document, document["_id"] if "_id" in document else ObjectId())
    try:
        _check_id(document["_id"])
    except WriteFailure as failure:
        return failure
    return value_key(document["_id"]), document


def _leading_documents(
    documents: list[tuple[Key, Document] | WriteFailure], start: int
) -> Iterator[tuple[Key, Document]]:
    for position in range(start, len(documents)):
        document = documents[position]
        if isinstance(document, WriteFailure):
            return
        yield document


@dataclass
class _UpdateOutcome:
    matched: int = 0
    modified: int = 0
    upserted_id: Any = None
    upserted: bool = False
    before: Document | None = None
    after: Document | None = None


def _modified(before: Document, after: Document) -> bool:
    return before != after or bson.encode(before) != bson.encode(after)


def _plan_update(
    ctx: CommandContext,
    collection: Collection,
    query: Document,
    update: Any,
    *,
    multi: bool,
    upsert: bool,
    array_filters: list[Document] | None,
    sort: Document | None,
    outcome: _UpdateOutcome,
) -> list[Change]:
    matched = snapshots.matching_documents(
        collection, query, ctx.transaction, limit=0 if (multi or sort) else 1
    )
    if sort and matched:
        ordered = matching.sort_documents([d for _, d in matched], sort)
        first = ordered[0]
        matched = [next((k, d) for k, d in matched if d is first)]
    changes = []
    outcome.matched, outcome.modified, outcome.upserted = len(matched), 0, False
    outcome.before = outcome.after = None
    for key, document in matched:
        updated = matching.clone(document)
        matching.apply_update(updated, query, update, array_filters, inserting=False)
        if "_id" not in updated or value_key(updated["_id"]) != key:
            raise WriteFailure(
                IMMUTABLE_FIELD,
                "Performing an update on the path '_id' would modify the immutable field '_id'",
            )
        updated = _with_id(updated, updated["_id"])
        outcome.before, outcome.after = document, updated
        if _modified(document, updated):
            changes.append(Change(collection, key, document, updated))
            outcome.modified += 1
    if not matched and upsert:
        seed = matching.upsert_seed(query)
        if matching.is_replacement(update):
            inserted = {"_id": seed["_id"]} if "_id" in seed else {}
            matching.apply_update(inserted, query, update, array_filters, inserting=True)
        else:
            inserted = matching.clone(seed)
            matching.apply_update(inserted, query, update, array_filters, inserting=True)
        inserted = _with_id(inserted, ObjectId())
        _check_id(inserted["_id"])
        outcome.upserted, outcome.upserted_id, outcome.after = True, inserted["_id"], inserted
        changes.append(Change(collection, value_key(inserted["_id"]), None, inserted))
    return changes


@command("update")
async def update(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    statements = _statements(ctx, "updates")
    ordered = bool(ctx.command.get("ordered", True))
    upserts = any(isinstance(s, dict) and s.get("upsert") for s in statements)
    collection = _for_writing(ctx, name) if upserts else _existing(ctx, name)
    matched = modified = 0
    upserted = []
    write_errors = []
    for index, statement in enumerate(statements):
        try:
            query = statement.get("q")
            change = statement.get("u")
            if not isinstance(query, dict):
                raise WriteFailure(TYPE_MISMATCH, "BSON field 'update.updates.q' must be an object")
            matching.validate_update(change)
            multi = bool(statement.get("multi", False))
            if multi and matching.is_replacement(change):
                raise WriteFailure(
                    FAILED_TO_PARSE, "multi update is not supported for replacement-style update"
                )
            outcome = _UpdateOutcome()
            if collection is None:
                matching.validate_query(query)
                continue
            plan = functools.partial(
                _plan_update,
                ctx,
                collection,
                query,
                change,
                multi=multi,
                upsert=bool(statement.get("upsert", False)),
                array_filters=statement.get("arrayFilters"),
                sort=statement.get("sort"),
                outcome=outcome,
            )
            await _write(ctx, plan)
            if outcome.upserted:
                matched += 1
                upserted.append({"index": index, "_id": outcome.upserted_id})
            else:
                matched += outcome.matched
                modified += outcome.modified
        except CommandError as failure:
            if not isinstance(failure, WriteFailure):
                if failure.code not in (BAD_VALUE, FAILED_TO_PARSE, TYPE_MISMATCH, 40, 28, 2):
                    raise
                failure = WriteFailure(failure.code, failure.message, extra=failure.extra)
            write_errors.append(failure.write_error(index))
            if ordered:
                break
    reply: dict[str, Any] = {"n": matched, "nModified": modified}
    if upserted:
        reply["upserted"] = upserted
    if write_errors:
        reply["writeErrors"] = write_errors
    return reply


@command("delete")
async def delete(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    statements = _statements(ctx, "deletes")
    ordered = bool(ctx.command.get("ordered", True))
    collection = _existing(ctx, name)
    deleted = 0
    write_errors = []
    for index, statement in enumerate(statements):
        try:
            query = statement.get("q")
            if not isinstance(query, dict):
                raise WriteFailure(TYPE_MISMATCH, "BSON field 'delete.deletes.q' must be an object")
            limit = statement.get("limit", 0)
            if limit not in (0, 1):
                raise WriteFailure(BAD_VALUE, "The limit field in delete objects must be 0 or 1.")
            if collection is None:
                matching.validate_query(query)
                continue

            def plan(q: Document = query, single: bool = limit == 1) -> list[Change]:
                assert collection is not None
                return [
                    Change(collection, key, document, None)
                    for key, document in snapshots.matching_documents(
                        collection, q, ctx.transaction, limit=1 if single else 0
                    )
                ]

            deleted += len(await _write(ctx, plan))
        except CommandError as failure:
            if not isinstance(failure, WriteFailure):
                if failure.code != BAD_VALUE:
                    raise
                failure = WriteFailure(failure.code, failure.message)
            write_errors.append(failure.write_error(index))
            if ordered:
                break
    reply: dict[str, Any] = {"n": deleted}
    if write_errors:
        reply["writeErrors"] = write_errors
    return reply


@command("findAndModify", "findandmodify")
async def find_and_modify(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    query = _document_option(ctx, "query") or {}
    sort = _document_option(ctx, "sort")
    _validate_sort(sort)
    fields = _document_option(ctx, "fields")
    remove = bool(ctx.command.get("remove", False))
    change = ctx.command.get("update")
    return_new = bool(ctx.command.get("new", False))
    upsert = bool(ctx.command.get("upsert", False))
    if remove and (change is not None or return_new or upsert):
        raise CommandError(FAILED_TO_PARSE, "Cannot specify both an update and remove=true")
    if not remove and change is None:
        raise CommandError(FAILED_TO_PARSE, "Either an update or remove=true must be specified")
    if not remove:
        matching.validate_update(change)
    collection = _for_writing(ctx, name) if upsert else _existing(ctx, name)
    last_error: dict[str, Any]
    if remove:
        removed: list[Document] = []

        def plan_remove() -> list[Change]:
            removed.clear()
            if collection is None:
                return []
            found = snapshots.matching_documents(
                collection, query, ctx.transaction, 0 if sort else 1
            )
            if sort and found:
                first = matching.sort_documents([d for _, d in found], sort)[0]
                found = [next((k, d) for k, d in found if d is first)]
            removed.extend(d for _, d in found)
            return [Change(collection, key, document, None) for key, document in found]

        await _write(ctx, plan_remove)
        value = removed[0] if removed else None
        last_error = {"n": len(removed)}
    else:
        outcome = _UpdateOutcome()
        if collection is None:
            matching.validate_query(query)
            value = None
            last_error = {"n": 0, "updatedExisting": False}
        else:
            await _write(
                ctx,
                lambda: _plan_update(
                    ctx,
                    collection,
                    query,
                    change,
                    multi=False,
                    upsert=upsert,
                    array_filters=ctx.command.get("arrayFilters"),
                    sort=sort,
                    outcome=outcome,
                ),
            )
            last_error = {
                "n": 1 if (outcome.matched or outcome.upserted) else 0,
                "updatedExisting": bool(outcome.matched),
            }
            if outcome.upserted:
                last_error["upserted"] = outcome.upserted_id
            value = outcome.after if return_new else (None if outcome.upserted else outcome.before)
    if value is not None and fields:
        value = matching.project(value, fields, query)
    return {"lastErrorObject": last_error, "value": value}


# ---------------------------------------------------------------- indexes

INDEX_SPEC_FIELDS = frozenset(
    {"key", "name", "unique", "sparse", "partialFilterExpression", "v", "ns", "background"}
)


def index_from_spec(spec: Any) -> Index:
    if not isinstance(spec, dict):
        raise CommandError(TYPE_MISMATCH, "index specifications must be objects")
    key = spec.get("key")
    if not isinstance(key, dict) or not key:
        raise CommandError(CANNOT_CREATE_INDEX, "Index keys cannot be an empty field")
    for field_name, direction in key.items():
        valid = (
            not isinstance(direction, bool)
            and isinstance(direction, int | float)
            and direction != 0
        ) or (direction in ("text", "2d", "2dsphere", "hashed"))
        if not valid:
            raise CommandError(
                CANNOT_CREATE_INDEX,
                f"Values in the index key pattern can't be {direction!r} ({field_name})",
            )
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise CommandError(
            FAILED_TO_PARSE, "The 'name' field is a required property of an index specification"
        )
    partial = spec.get("partialFilterExpression")
    if partial is not None and not isinstance(partial, dict):
        raise CommandError(TYPE_MISMATCH, "partialFilterExpression must be an object")
    if partial is not None:
        matching.validate_query(partial)
    return Index(
        name=name,
        key=list(key.items()),
        unique=bool(spec.get("unique", False)),
        sparse=bool(spec.get("sparse", False)),
        partial_filter=partial,
        options={k: v for k, v in spec.items() if k not in INDEX_SPEC_FIELDS},
    )


def _same_definition(a: Index, b: Index) -> bool:
    left, right = a.describe(), b.describe()
    left.pop("name")
    right.pop("name")
    return bson.encode(left) == bson.encode(right)


def build_unique_entries(collection: Collection, index: Index) -> None:
    for key, record in collection.records.items():
        document = record.latest()
        for index_key, values in index.keys_of(document).items():
            holder = index.entries.get(index_key)
            if holder is not None and holder != key:
                shown = ", ".join(f"{k}: {v!r}" for k, v in index.key_value(values).items())
                raise CommandError(
                    11000,
                    f"Index build failed: E11000 duplicate key error collection: "
                    f"{collection.namespace} index: {index.name} dup key: {{ {shown} }}",
                    extra={"keyPattern": index.key_pattern, "keyValue": index.key_value(values)},
                )
            index.entries[index_key] = key


@command("createIndexes")
async def create_indexes(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    specs = ctx.command.get("indexes")
    if not isinstance(specs, list) or not specs:
        raise CommandError(BAD_VALUE, "Must specify at least one index to create")
    wanted = [index_from_spec(spec) for spec in specs]
    created_automatically = _existing(ctx, name) is None
    collection = _for_writing(ctx, name)
    before = len(collection.indexes)
    for index in wanted:
        existing = collection.indexes.get(index.name)
        if existing is not None:
            if _same_definition(existing, index):
                continue
            if existing.key == index.key:
                raise CommandError(
                    INDEX_OPTIONS_CONFLICT,
                    f"An existing index has the same name as the requested index. "
                    f"Requested index: {index.describe()}, existing index: {existing.describe()}",
                )
            raise CommandError(
                INDEX_KEY_SPECS_CONFLICT,
                f"An existing index has the same name as the requested index. "
                f"Requested index: {index.describe()}, existing index: {existing.describe()}",
            )
        for other in collection.indexes.values():
            if other.key == index.key and other.partial_filter == index.partial_filter:
                raise CommandError(
                    INDEX_OPTIONS_CONFLICT,
                    f"Index already exists with a different name: {other.name}",
                )
        _check_index_build_in_transaction(ctx, collection)
        if index.unique:
            build_unique_entries(collection, index)
        collection.add_index(index)
        ctx.state.store.changes += 1
    reply: dict[str, Any] = {
        "createdCollectionAutomatically": created_automatically,
        "numIndexesBefore": before,
        "numIndexesAfter": len(collection.indexes),
    }
    if before == len(collection.indexes):
        reply["note"] = "all indexes already exist"
    return reply


def _check_index_build_in_transaction(ctx: CommandContext, collection: Collection) -> None:
    """A transaction may only add indexes to an empty collection it created itself (7.0)."""
    transaction = ctx.transaction
    if transaction is None:
        return
    key = (collection.database, collection.name)
    if transaction.created_collections.get(key) is not collection:
        raise CommandError(
            OPERATION_NOT_SUPPORTED_IN_TRANSACTION,
            f"Cannot create new indexes on existing collection {collection.namespace} in a "
            f"multi-document transaction.",
        )
    if snapshots.visible_documents(collection, transaction):
        raise CommandError(
            OPERATION_NOT_SUPPORTED_IN_TRANSACTION,
            f"Cannot create new indexes on non-empty collection {collection.namespace} in a "
            f"multi-document transaction.",
        )


@command("listIndexes")
async def list_indexes(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    collection = _existing(ctx, name)
    if collection is None:
        raise CommandError(NAMESPACE_NOT_FOUND, f"ns does not exist: {ctx.database}.{name}")
    described = [index.describe() for index in collection.indexes.values()]
    return _cursor_reply(ctx, f"{ctx.database}.{name}", described, first=True)


@command("dropIndexes", "deleteIndexes")
async def drop_indexes(ctx: CommandContext) -> dict[str, Any]:
    name = _collection_name(ctx)
    collection = _existing(ctx, name)
    if collection is None:
        raise CommandError(NAMESPACE_NOT_FOUND, f"ns not found {ctx.database}.{name}")
    target = ctx.command.get("index")
    was = len(collection.indexes)
    if target == "*":
        names = [n for n in collection.indexes if n != "_id_"]
    elif isinstance(target, str):
        names = [target]
    elif isinstance(target, list):
        names = [str(n) for n in target]
    elif isinstance(target, dict):
        names = [n for n, i in collection.indexes.items() if i.key_pattern == target]
        if not names:
            raise CommandError(INDEX_NOT_FOUND, f"can't find index with key: {target}")
    else:
        raise CommandError(TYPE_MISMATCH, "'index' must be a name, a key pattern or a list")
    for index_name in names:
        if index_name == "_id_":
            raise CommandError(INVALID_OPTIONS, "cannot drop _id index")
        if index_name not in collection.indexes:
            raise CommandError(INDEX_NOT_FOUND, f"index not found with name [{index_name}]")
    for index_name in names:
        collection.drop_index(index_name)
    ctx.state.store.changes += 1
    return {"nIndexesWas": was}
