"""A finished transaction of the stand-in keeps nothing it wrote alive."""

from __future__ import annotations

import gc
import uuid
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from bson import Binary

from eventhunting.standins.mongo.server import StandinServer
from eventhunting.standins.mongo.state import Connection, ServerState, Settings


@pytest.fixture
def without_cycle_collection() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("ending", ["commitTransaction", "abortTransaction"])
@pytest.mark.usefixtures("without_cycle_collection")
async def test_a_dropped_collection_a_finished_transaction_wrote_is_freed_at_once(
    ending: str,
) -> None:
    state = ServerState(Settings())
    server = StandinServer(state)
    connection = Connection(1, "test", "127.0.0.1", 1)
    session: dict[str, Any] = {"lsid": {"id": Binary.from_uuid(uuid.uuid4())}, "txnNumber": 1}

    async def run(command: dict[str, Any], database: str = "shop") -> dict[str, Any]:
        reply = await server.execute(connection, command, database)
        assert reply["ok"] == 1.0, reply
        return reply

    await run({"create": "orders"})
    written = state.store.collection("shop", "orders")
    assert written is not None
    freed = weakref.ref(written)
    del written
    await run(
        {
            "insert": "orders",
            "documents": [{"_id": 1}],
            **session,
            "autocommit": False,
            "startTransaction": True,
        }
    )
    await run({ending: 1, **session, "autocommit": False}, "admin")
    await run({"drop": "orders"})
    assert freed() is None
