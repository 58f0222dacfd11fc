"""The Redis client of the event store: one Redis server or a Redis Cluster, by URL."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError

RedisClient = aioredis.Redis | RedisCluster
"""What every part of the product talks to: commands, scripts and pipelines work the same on
both (every key of one partition shares one hash slot); the few places that must know which
it is ask `is_cluster`."""

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""URL schemes naming a Redis Cluster by its seed nodes, and the scheme of each node."""

DEFAULT_PORT = 6379

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


class BoundedRedisCluster(RedisCluster):
    """A RedisCluster whose commands wait for a free slot instead of failing a burst, and
    are never routed before the client knows the cluster.

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

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self.gate.acquire()
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None
        try:
            if self._initialize:
                # redis-py routes a command before it initialises the client, and a command
                # routed while another one initialises finds no command table (XGROUP CREATE
                # then fails with "Missing key"); initialising first (under its lock) avoids it.
                await self.initialize()
            return await super().execute_command(*args, **kwargs)
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
