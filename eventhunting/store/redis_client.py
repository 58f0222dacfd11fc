"""The Redis client of the event store: one Redis server or a Redis Cluster, by URL."""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.driver_info import DriverInfo
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    NoScriptError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

RedisClient = aioredis.Redis | RedisCluster
"""What every part of the product talks to: commands, scripts and pipelines work the same on
both (every key of one partition shares one hash slot); the few places that must know which
it is ask `is_cluster`."""

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""URL schemes naming a Redis Cluster by its seed nodes, and the scheme of each node."""

DEFAULT_PORT = 6379

NOT_RUN = (
    NoScriptError,
    AskError,
    TryAgainError,
    ClusterDownError,
    ClusterError,
    SlotNotCoveredError,
)
"""Cluster replies that mean a command did not run: MOVED/ASK (AskError is MovedError's base)
and TRYAGAIN come before a command or script starts (its keys are checked first),
CLUSTERDOWN and an uncovered slot refuse it, NOSCRIPT did not find the script, and redis-py's
"TTL exhausted" (ClusterError) follows only redirections."""

CLUSTER_PATIENCE_SECONDS = 15.0
"""How long a command refused that way is sent again while its slot migrates or its master
fails over, before the error reaches the caller."""
CLUSTER_RETRY_PAUSE_SECONDS = 0.05

PIPELINE_CONNECTIONS = 32
"""Connections per node beyond the command limit, for pipelines (not counted by the gate)."""


def is_cluster(redis: RedisClient) -> TypeGuard[RedisCluster]:
    return isinstance(redis, RedisCluster)


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """`redis+cluster://[user:password@]host1:7000,host2:7001[/][?options]`, parsed.

    `node_url` is an ordinary Redis URL of the first seed node with the same credentials
    and options (what redis-py parses them from); `seeds` are every (host, port).
    """

    node_url: str
    seeds: tuple[tuple[str, int], ...]


def parse_cluster_url(url: str) -> ClusterUrl | None:
    """The seed nodes of a cluster URL; None for a URL of one server; ValueError when invalid."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme)
    if scheme is None:
        return None
    credentials, at, hosts = parts.netloc.rpartition("@")
    seeds: list[tuple[str, int]] = []
    for seed in hosts.split(","):
        host, colon, port = seed.strip().rpartition(":")
        if not colon:
            host, port = port, str(DEFAULT_PORT)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ValueError(f"seed node {seed!r} is not host:port")
        seeds.append((unquote(host), int(port)))
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has database 0 only; drop the path")
    first_host, first_port = seeds[0]
    netloc = f"{credentials}{at}{first_host}:{first_port}"
    node_url = urlunsplit((scheme, netloc, "", parts.query, ""))
    return ClusterUrl(node_url=node_url, seeds=tuple(seeds))


ASKING_FOR: ContextVar[str | None] = ContextVar("eventhunting_asking_for", default=None)
"""The node (host:port) whose next command, in this task, must be preceded by ASKING."""


class AskingConnectionMixin:
    """Sends ASKING on the connection of the command it is for.

    On an ASK redirection redis-py's asyncio cluster client sends ASKING and then the
    command, each on a connection taken from the node's pool: two different connections as
    soon as more than one is free, and ASKING is a flag of the connection. The command then
    bounces (MOVED back to the migrating node, ASK again) until redis-py gives up ("TTL
    exhausted") and every command on an already moved key of a migrating slot stalls until
    the migration ends. This connection holds ASKING back, answers it itself, and writes it
    in front of the same task's next command to that node, on that command's connection.
    """

    host: str
    port: int
    answer_asking = False
    asking_packed = False
    replies_to_skip = 0

    def pack_command(self, *args: Any) -> list[bytes]:
        if len(args) == 1 and str(args[0]).upper() == "ASKING":
            ASKING_FOR.set(f"{self.host}:{self.port}")
            self.answer_asking = True
            return []
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        if ASKING_FOR.get() == f"{self.host}:{self.port}":
            ASKING_FOR.set(None)
            self.asking_packed = True
            asking: list[bytes] = super().pack_command("ASKING")  # type: ignore[misc]
            return [*asking, *packed]
        return packed

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if isinstance(command, list) and not command:
            return  # an ASKING held back for the next command
        asking, self.asking_packed = self.asking_packed, False
        # Counted once sent: sending may first connect, and the handshake reads its replies.
        try:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
        except RuntimeError as error:
            raise closed_before_written(error, f"{self.host}:{self.port}") from error
        if asking:
            self.replies_to_skip += 1

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if self.answer_asking:
            self.answer_asking = False
            return b"OK"
        while self.replies_to_skip:
            self.replies_to_skip -= 1
            await super().read_response(*args, **kwargs)  # type: ignore[misc]  # ASKING's +OK
        return await super().read_response(*args, **kwargs)  # type: ignore[misc]

    async def disconnect(self, *args: Any, **kwargs: Any) -> None:
        self.answer_asking, self.asking_packed, self.replies_to_skip = False, False, 0
        await super().disconnect(*args, **kwargs)  # type: ignore[misc]


class AskingConnection(AskingConnectionMixin, Connection):
    """A cluster node connection that keeps ASKING with its command (see the mixin)."""


class AskingSSLConnection(AskingConnectionMixin, SSLConnection):
    """The same over TLS (`rediss+cluster://`)."""


def closed_before_written(error: RuntimeError, node: str) -> Exception:
    """uvloop refuses to write on a transport that is already closed (a node that failed
    over, or was rediscovered, cut it) with RuntimeError, where asyncio's transport reports
    a connection error. Nothing was written, so it is a connection error redis-py's cluster
    client retries on the node it rediscovers; any other RuntimeError is raised as is."""
    if "handler is closed" in str(error):
        return RedisConnectionError(f"connection to {node} closed before the command: {error}")
    return error


def torn_down(error: AttributeError) -> Exception:
    """redis-py's cluster client disconnects every connection of a node when it rediscovers
    the cluster (after a node failed), those in use included; a command then fails inside
    the connection with AttributeError on its closed writer or reader. That is a connection
    error (the command's outcome is unknown); any other AttributeError is a bug, raised as is."""
    if "'NoneType' object has no attribute" in str(error):
        return RedisConnectionError(f"connection closed while in use: {error}")
    return error


class BoundedRedisCluster(RedisCluster):
    """A RedisCluster whose commands wait for a free slot instead of failing a burst, are
    never routed before the client knows the cluster, and follow ASK redirections (with
    `AskingConnection`).

    redis-py's cluster client raises MaxConnectionsError as soon as a node's connections are
    all busy; a flash sale has thousands of concurrent commands. This caps the commands in
    flight per process, as a BlockingConnectionPool does for one server (each command takes
    one connection of one node, so no node runs out). Pipelines take one connection per
    node and are not counted: the node limit leaves room for them.
    """

    def __init__(self, *args: Any, in_flight: int, wait_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Semaphore(in_flight)
        self.wait_seconds = wait_seconds
        # Nodes are built from these keyword arguments (the seed nodes already were).
        tls = issubclass(self.connection_kwargs.get("connection_class", Connection), SSLConnection)
        connection_class = AskingSSLConnection if tls else AskingConnection
        self.connection_kwargs["connection_class"] = connection_class
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = connection_class

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self.gate.acquire()
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None
        try:
            deadline = time.monotonic() + CLUSTER_PATIENCE_SECONDS
            while True:
                if self._initialize:
                    # redis-py routes a command before it initialises the client, and a
                    # command routed while another one initialises finds no command table
                    # (XGROUP CREATE then fails with "Missing key"): initialise first.
                    await self.initialize()
                try:
                    return await super().execute_command(*args, **kwargs)
                except AttributeError as error:
                    raise torn_down(error) from error
                except (*NOT_RUN, ResponseError) as error:
                    # It did not run (a redirection that outlasted redis-py's, a slot being
                    # migrated, a failover, or a blocking read a failover cut short): send
                    # it again until the migration or failover is over.
                    refused = isinstance(error, NOT_RUN) or str(error).startswith("UNBLOCKED")
                    if not refused or isinstance(error, NoScriptError):
                        raise
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(CLUSTER_RETRY_PAUSE_SECONDS)
        finally:
            self.gate.release()


def connect_redis(url: str, *, max_connections: int, timeout: float) -> RedisClient:
    """A client for `url` (it connects lazily): a cluster client for `redis+cluster://`."""
    # Named once: by default every new connection looks redis-py's version up in the
    # installed packages' metadata (about 3 ms, blocking the event loop) just when a burst
    # of requests grows the pool.
    driver_info = DriverInfo(name="redis-py", lib_version=redis.__version__)
    cluster = parse_cluster_url(url)
    if cluster is None:
        # A burst of requests waits for a free connection instead of failing: redis-py's
        # default pool raises "Too many connections" past 100 concurrent commands.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, driver_info=driver_info
        )
        return aioredis.Redis.from_pool(pool)
    return BoundedRedisCluster.from_url(
        cluster.node_url,
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.seeds[1:]],
        in_flight=max_connections,
        wait_seconds=timeout,
        # Room for the pipelines beside the commands counted by the gate.
        max_connections=max_connections + PIPELINE_CONNECTIONS,
        driver_info=driver_info,
    )
