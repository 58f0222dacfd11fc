"""Everything the server shares across connections: data, sessions, cursors and settings."""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId

from eventhunting.standins.mongo import snapshots
from eventhunting.standins.mongo.failpoints import FailCommand
from eventhunting.standins.mongo.storage import Document, Store
from eventhunting.standins.mongo.transactions import Session, Sessions, Transaction

CURSOR_IDLE_TIMEOUT_SECONDS = 600.0
SESSION_IDLE_TIMEOUT_SECONDS = 30 * 60.0


@dataclass
class Cursor:
    """Results of a find or aggregate still to be fetched with getMore."""

    id: int
    namespace: str
    documents: list[Document]
    position: int = 0
    session: Session | None = None
    last_used: float = field(default_factory=time.monotonic)


@dataclass
class Settings:
    replica_set_name: str = "rs0"
    transaction_lifetime_limit_seconds: float = 60.0


@dataclass
class Connection:
    id: int
    peer: str
    local_host: str
    local_port: int
    app_name: str | None = None


class ServerState:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store()
        self.sessions = Sessions()
        self.cursors: dict[int, Cursor] = {}
        self.fail_command = FailCommand()
        self.process_id = ObjectId()
        self.started_at = time.monotonic()
        self.connection_ids = itertools.count(1)
        self.open_connections = 0
        self._random = random.Random()

    def open_cursor(
        self, namespace: str, documents: list[Document], position: int, session: Session | None
    ) -> Cursor:
        while True:
            cursor_id = self._random.randint(1, 2**62)
            if cursor_id not in self.cursors:
                break
        cursor = Cursor(cursor_id, namespace, documents, position, session)
        self.cursors[cursor_id] = cursor
        if session is not None:
            session.cursors.add(cursor_id)
        return cursor

    def close_cursor(self, cursor_id: int) -> bool:
        cursor = self.cursors.pop(cursor_id, None)
        if cursor is None:
            return False
        if cursor.session is not None:
            cursor.session.cursors.discard(cursor_id)
        return True

    def start_transaction(self, session: Session, number: int) -> Transaction:
        self.abort_open_transaction(session, "a newer transaction started on the session")
        transaction = Transaction(session, number, self.store.clock)
        snapshots.begin(self.store, transaction)
        session.transaction = transaction
        return transaction

    def abort_open_transaction(self, session: Session, reason: str) -> None:
        if session.transaction is not None and session.transaction.active:
            snapshots.abort(self.store, session.transaction, reason)

    def end_session(self, lsid: dict[str, Any]) -> None:
        session = self.sessions.find(lsid)
        if session is None:
            return
        self.abort_open_transaction(session, "the session ended")
        for cursor_id in list(session.cursors):
            self.close_cursor(cursor_id)
        del self.sessions.by_key[session.key]

    def reap(self) -> list[Transaction]:
        """Abort transactions past their lifetime; drop idle cursors and sessions."""
        now = time.monotonic()
        limit = self.settings.transaction_lifetime_limit_seconds
        expired = []
        for session in list(self.sessions.by_key.values()):
            transaction = session.transaction
            if (
                transaction is not None
                and transaction.active
                and now - transaction.started_at > limit
            ):
                snapshots.abort(self.store, transaction, "TransactionExceededLifetimeLimitSeconds")
                expired.append(transaction)
            idle = now - session.last_used > SESSION_IDLE_TIMEOUT_SECONDS
            if idle and (transaction is None or not transaction.active):
                self.end_session(session.lsid)
        for cursor_id, cursor in list(self.cursors.items()):
            if now - cursor.last_used > CURSOR_IDLE_TIMEOUT_SECONDS:
                self.close_cursor(cursor_id)
        self.store.collect_garbage()
        return expired
