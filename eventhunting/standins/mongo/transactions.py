"""Logical sessions and their multi-document transactions (snapshot reads, buffered writes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventhunting.standins.mongo.storage import Collection, Document, Index, Key


class Transaction:
    """One transaction: the snapshot it reads and the writes it will apply at commit."""

    def __init__(self, session: Session, number: int, snapshot: int) -> None:
        self.session = session
        self.number = number
        self.snapshot = snapshot
        self.started_at = time.monotonic()
        self.state = "active"
        self.abort_reason = ""
        self.writes: dict[Collection, dict[Key, Document | None]] = {}
        self.claims: dict[Index, dict[Key, Key]] = {}
        # Collections (and their indexes) it created: nobody else sees them before commit.
        self.created_collections: dict[tuple[str, str], Collection] = {}
        self.finished = asyncio.Event()

    @property
    def active(self) -> bool:
        return self.state == "active"

    def __repr__(self) -> str:
        return f"Transaction(txnNumber={self.number}, state={self.state})"


class Session:
    """Server-side state of one logical session (lsid)."""

    def __init__(self, key: Hashable, lsid: dict[str, Any]) -> None:
        self.key = key
        self.lsid = lsid
        self.last_used = time.monotonic()
        self.highest_txn_number = -1
        self.transaction: Transaction | None = None
        self.retried_write: tuple[int, dict[str, Any]] | None = None
        self.cursors: set[int] = set()


class Sessions:
    def __init__(self) -> None:
        self.by_key: dict[Hashable, Session] = {}

    def get(self, lsid: dict[str, Any]) -> Session:
        identifier = lsid.get("id")
        key: Hashable = bytes(identifier) if isinstance(identifier, bytes) else repr(identifier)
        session = self.by_key.get(key)
        if session is None:
            session = self.by_key[key] = Session(key, lsid)
        session.last_used = time.monotonic()
        return session

    def find(self, lsid: dict[str, Any]) -> Session | None:
        identifier = lsid.get("id")
        key: Hashable = bytes(identifier) if isinstance(identifier, bytes) else repr(identifier)
        return self.by_key.get(key)
