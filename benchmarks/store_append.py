"""Event-store throughput: appends/s vs redis-benchmark EVALSHA, bytes/event, archive, replay.

Run: .venv/bin/python -m benchmarks.store_append [--seconds 10] [--processes 2] [--rounds 3]
     [--fsync always]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import multiprocessing
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession

from eventhunting.domain.events import DomainEvent, EventRegistry
from eventhunting.projections.base import Database, Projection
from eventhunting.projections.replay import replay
from eventhunting.store import keys
from eventhunting.store.append import (
    APPEND_SCRIPT,
    AppendRequest,
    CounterChange,
    CounterSet,
    EventStore,
    effects_encoder,
    effects_of,
    keys_of,
    stream_range,
)
from eventhunting.store.archive import Archiver, create_event_indexes
from eventhunting.store.consumer_groups import log_entry
from eventhunting.store.envelope import EventMeta, encode_stored_event
from tests.support.servers import free_port, running_mongo_standin, wait_for_port

PARTITIONS = 16
PARTITION = 3
TICKET_TYPE = "inventory:tt-01JD0000000000000000000000"
RANDOM_KEYSPACE = 2_000_000_000

bench_registry = EventRegistry()


@bench_registry.event("TicketsHeld", stream_kind="order")
class TicketsHeld(DomainEvent, frozen=True, kw_only=True):
    """A realistic small payload: an order holding tickets of one type."""

    order_id: str
    event_id: str
    buyer_id: str
    ticket_type_id: str
    quantity: int
    unit_price: int
    hold_expires_at_ms: int


def held(order_id: str) -> TicketsHeld:
    return TicketsHeld(
        order_id=order_id,
        event_id="01JD0000000000000000000000",
        buyer_id="01JD0000000000000000000001",
        ticket_type_id="01JD0000000000000000000002",
        quantity=2,
        unit_price=450_000,
        hold_expires_at_ms=1_767_225_600_000,
    )


def hold_request(order_id: str, command_id: str) -> AppendRequest:
    """What placing an order appends: one event, one capacity guard, an idempotency id."""
    return AppendRequest(
        partition=PARTITION,
        stream=f"order-{order_id}",
        events=[held(order_id)],
        expected_version=0,
        meta=EventMeta(command_id=command_id, correlation_id=command_id, actor="account-01JD"),
        idempotency_id=command_id,
        counters=[
            CounterChange(
                TICKET_TYPE,
                {"held": 2},
                sum_fields=("held", "sold"),
                ceiling_field="capacity",
                code="sold_out",
            )
        ],
    )


@contextmanager
def running_redis(fsync: str) -> Iterator[tuple[str, int, int]]:
    """A private redis-server: (URL, port, process id)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", data_dir,
                "--appendonly", "yes" if fsync != "off" else "no",
                "--appendfsync", fsync if fsync != "off" else "no",
                "--save", "",
                # An AOF rewrite (a fork) mid-run would load the two cores at random.
                "--auto-aof-rewrite-percentage", "0",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for_port(port, process=process)
            yield f"redis://127.0.0.1:{port}/0", port, process.pid
        finally:
            process.terminate()
            process.wait(timeout=10)


async def log_length(redis_url: str) -> int:
    redis = aioredis.Redis.from_url(redis_url)
    length = int(await redis.xlen(keys.log_key(PARTITION)))
    await redis.aclose()
    return length


async def prepare(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    await redis.flushall()
    store = EventStore(redis, PARTITIONS, event_registry=bench_registry)
    await store.append(
        AppendRequest(
            partition=PARTITION,
            stream=f"order-{keys.new_id_in_partition(PARTITION, PARTITIONS)}",
            events=[held("setup")],
            counters=[CounterSet(TICKET_TYPE, {"capacity": 10**15, "held": 0, "sold": 0})],
        )
    )
    await redis.aclose()


async def append_for(
    redis_url: str, seconds: float, concurrency: int, worker: int
) -> tuple[int, float]:
    """(appends, CPU seconds of this process) for `concurrency` callers over `seconds`."""
    redis = aioredis.Redis.from_url(redis_url, max_connections=concurrency)
    store = EventStore(redis, PARTITIONS, event_registry=bench_registry)
    await store.append(hold_request(f"{worker}xwarm", f"cmd-{worker}xwarm"))  # connect, load
    started_cpu = time.process_time()
    deadline = time.monotonic() + seconds
    counts = [0] * concurrency

    async def caller(index: int) -> None:
        serial = 0
        while time.monotonic() < deadline:
            serial += 1
            order_id = f"{worker}x{index}x{serial}"
            await store.append(hold_request(order_id, f"cmd-{order_id}"))
            counts[index] += 1

    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    cpu_seconds = time.process_time() - started_cpu
    await redis.aclose()
    return sum(counts), cpu_seconds


def append_process(arguments: tuple[str, float, int, int]) -> tuple[int, float]:
    return asyncio.run(append_for(*arguments))


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Rate:
    """Appends per second, with the CPU each append cost the client and Redis (µs)."""

    per_second: float
    client_cpu_us: float
    redis_cpu_us: float


def store_appends_per_second(
    redis_url: str, redis_pid: int, seconds: float, processes: int, concurrency: int
) -> Rate:
    asyncio.run(prepare(redis_url))
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        redis_cpu = cpu_seconds_of(redis_pid)
        results = pool.map(
            append_process, [(redis_url, seconds, concurrency, w) for w in range(processes)]
        )
        redis_cpu = cpu_seconds_of(redis_pid) - redis_cpu
    appends = sum(count for count, _ in results)
    # Each worker counts only inside its own window of `seconds` (start-up excluded); Redis
    # CPU includes the workers' start-up, a few appends.
    return Rate(
        per_second=appends / seconds,
        client_cpu_us=sum(cpu for _, cpu in results) / appends * 1e6,
        redis_cpu_us=redis_cpu / appends * 1e6,
    )


def redis_benchmark_arguments() -> list[str]:
    """EVALSHA of append.lua with the same KEYS/ARGV shape as one hold, ids randomised."""
    request = hold_request("__rand_int__", "cmd-__rand_int__")
    effects = effects_of(request)
    assert effects is not None
    record = encode_stored_event(
        event_id="01JD00000000__rand_int__",
        type_name="TicketsHeld",
        schema=1,
        occurred_at=datetime.now(UTC),
        meta=request.meta,
        data=request.events[0],
    )
    script_keys = keys_of(request, effects)
    return [
        "EVALSHA",
        hashlib.sha1(APPEND_SCRIPT.encode()).hexdigest(),
        str(len(script_keys)),
        *script_keys,
        "0",
        request.stream,
        effects_encoder.encode(effects).decode(),
        record.decode(),
    ]


def redis_ceiling(
    redis_url: str, port: int, redis_pid: int, clients: int, requests: int, pipeline: int = 1
) -> Rate:
    """redis-benchmark: `clients` connections, each with `pipeline` requests in flight."""
    asyncio.run(prepare(redis_url))
    redis_cpu = cpu_seconds_of(redis_pid)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [
            "redis-benchmark",
            "-h", "127.0.0.1",
            "-p", str(port),
            "-c", str(clients),
            "-P", str(pipeline),
            "-n", str(requests),
            # redis-benchmark parses -r with atoi: keep it below 2**31, or the keyspace
            # overflows, nothing is randomised and every request but the first takes the
            # script's idempotency shortcut (which is what an earlier run measured).
            "-r", str(RANDOM_KEYSPACE),
            "-q",
            *redis_benchmark_arguments(),
        ],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    redis_cpu = cpu_seconds_of(redis_pid) - redis_cpu
    appended = asyncio.run(log_length(redis_url)) - 1  # the setup append
    # A few random ids repeat (birthday collisions); anything more means a broken run.
    if appended < requests * 0.99:
        raise RuntimeError(f"only {appended:,} of {requests:,} redis-benchmark calls appended")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (children.ru_utime + children.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    rates = re.findall(r"([\d.]+) requests per second", result.stdout)
    return Rate(
        per_second=float(rates[-1]),
        client_cpu_us=client_cpu / requests * 1e6,
        redis_cpu_us=redis_cpu / requests * 1e6,
    )


async def bytes_per_event(
    redis_url: str, count: int, node_max_bytes: int = 4096
) -> tuple[float, float]:
    """(bytes per event in Redis overall, of which streams and log) after `count` holds.

    Each hold opens a new one-event order stream; Redis 7.0 preallocates a stream's first
    listpack node up to min(4096, stream-node-max-bytes), which dominates small streams.
    """
    redis = aioredis.Redis.from_url(redis_url)
    await prepare(redis_url)
    await redis.config_set("stream-node-max-bytes", node_max_bytes)
    store = EventStore(redis, PARTITIONS, event_registry=bench_registry)
    before = int((await redis.info("memory"))["used_memory"])
    for _ in range(count):
        order_id = keys.new_id_in_partition(PARTITION, PARTITIONS)
        await store.append(hold_request(order_id, f"cmd-{order_id}"))
    after = int((await redis.info("memory"))["used_memory"])
    streams = 0
    async for key in redis.scan_iter(match="{p3}:*", count=1000):
        if b":stream:" in key or key.endswith(b":log"):
            streams += int(await redis.memory_usage(key) or 0)
    await redis.config_set("stream-node-max-bytes", 4096)
    await redis.aclose()
    return (after - before) / count, streams / count


class HeldTickets(Projection):
    """A benchmark read model: one document per order."""

    name = "bench_orders"
    collections = ("bench_orders",)

    async def apply(self, event: Any, db: Database, session: AsyncClientSession) -> None:
        data = event.data
        await db["bench_orders"].update_one(
            {"_id": event.stream},
            {"$set": {"quantity": data.quantity, "version": event.version}},
            upsert=True,
            session=session,
        )


async def archive_and_replay(redis_url: str, mongodb_url: str, count: int) -> tuple[float, float]:
    redis = aioredis.Redis.from_url(redis_url)
    await prepare(redis_url)
    store = EventStore(redis, PARTITIONS, event_registry=bench_registry)
    for _ in range(count):
        order_id = keys.new_id_in_partition(PARTITION, PARTITIONS)
        await store.append(hold_request(order_id, f"cmd-{order_id}"))
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    database = mongo["bench"]
    await mongo.drop_database("bench")
    await create_event_indexes(database)
    archiver = Archiver(database)
    started = time.monotonic()
    start = "-"
    archived = 0
    while True:
        entries = await stream_range(redis, keys.log_key(PARTITION), start, "+", count=500)
        if not entries:
            break
        await archiver([log_entry(PARTITION, i, f) for i, f in entries])
        archived += len(entries)
        last = entries[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else last)
    archive_rate = archived / (time.monotonic() - started)
    started = time.monotonic()
    report = await replay(
        database,
        [HeldTickets()],
        partitions=PARTITIONS,
        from_archive=True,
        event_registry=bench_registry,
        progress=io.StringIO(),
    )
    replay_rate = report.events / (time.monotonic() - started)
    await mongo.drop_database("bench")
    await mongo.close()
    await redis.aclose()
    return archive_rate, replay_rate


def machine() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    return f"nproc={os.cpu_count()}, CPU {cpu}, Redis {version}, Python {platform.python_version()}"


def describe(rate: Rate) -> str:
    return (
        f"{rate.per_second:>9,.0f}/s  (CPU per append: client {rate.client_cpu_us:.0f} µs,"
        f" redis-server {rate.redis_cpu_us:.0f} µs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32, help="callers per process")
    parser.add_argument("--rounds", type=int, default=3, help="store/redis-benchmark pairs")
    parser.add_argument("--fsync", default="always", choices=["always", "everysec", "off"])
    parser.add_argument("--events", type=int, default=5_000, help="events for bytes/archive")
    arguments = parser.parse_args()

    print(machine())
    callers = arguments.processes * arguments.concurrency
    print(
        f"{arguments.processes} processes x {arguments.concurrency} callers through EventStore"
        f" vs redis-benchmark -c {callers} (one request in flight per connection) and"
        f" -c {arguments.processes} -P {arguments.concurrency} (the same batches a process"
        f" can send); appendfsync {arguments.fsync}; load generators share the cores with Redis"
    )
    ratios: list[float] = []
    with running_redis(arguments.fsync) as (redis_url, port, redis_pid):
        for round_number in range(1, arguments.rounds + 1):
            store = store_appends_per_second(
                redis_url, redis_pid, arguments.seconds, arguments.processes, arguments.concurrency
            )
            # As many requests as keep redis-benchmark busy for about as long as the store.
            requests = max(int(store.per_second * arguments.seconds * 3), 100_000)
            ceiling = redis_ceiling(redis_url, port, redis_pid, callers, requests)
            pipelined = redis_ceiling(
                redis_url, port, redis_pid, arguments.processes, requests, arguments.concurrency
            )
            ratios.append(store.per_second / ceiling.per_second)
            print(f"round {round_number}")
            print(f"  EventStore.append                       {describe(store)}")
            print(f"  redis-benchmark EVALSHA, -c {callers:<3} -P 1      {describe(ceiling)}")
            print(
                f"  redis-benchmark EVALSHA, -c {arguments.processes} -P {arguments.concurrency:<3}"
                f"       {describe(pipelined)}"
            )
            print(f"  ratio to the -P 1 ceiling: {ratios[-1]:.2f}")
        median = statistics.median(ratios)
        print(f"ratio, best of {len(ratios)}: {max(ratios):.2f}; median {median:.2f}")
        for node_max_bytes in (4096, 512):
            total, streams = asyncio.run(
                bytes_per_event(redis_url, arguments.events, node_max_bytes)
            )
            print(
                f"bytes per event in Redis (stream-node-max-bytes {node_max_bytes}): "
                f"{total:,.0f} (streams + log: {streams:,.0f})"
            )
        with running_mongo_standin() as mongodb_url:
            archive_rate, replay_rate = asyncio.run(
                archive_and_replay(redis_url, mongodb_url, arguments.events)
            )
        print(f"archive: {archive_rate:,.0f} events/s")
        print(f"replay from archive: {replay_rate:,.0f} events/s")


if __name__ == "__main__":
    main()
