"""Cluster node connections: a command on a connection whose transport a failover closed."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import uvloop
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

from eventhunting.store.redis_client import AskingConnection


async def send_on_a_closed_transport(connection: Connection) -> None:
    await connection.connect()
    assert connection._writer is not None
    connection._writer.transport.abort()  # as a node that failed over leaves it
    try:
        await connection.send_command("PING")
    finally:
        await connection.disconnect()


def test_a_command_on_a_transport_already_closed_is_a_connection_error_to_retry(
    redis_url: str,
) -> None:
    address = urlsplit(redis_url)
    node = {"host": address.hostname or "127.0.0.1", "port": address.port or 6379}
    # What the API's event loop (uvloop) does with redis-py's own connection: a RuntimeError,
    # which redis-py's cluster client does not retry (the request failed with a 500).
    with pytest.raises(RuntimeError, match="handler is closed"):
        uvloop.run(send_on_a_closed_transport(Connection(**node)))
    with pytest.raises(RedisConnectionError, match="closed before the command"):
        uvloop.run(send_on_a_closed_transport(AskingConnection(**node)))
