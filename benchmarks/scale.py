"""Scale benchmark: holds/s for 1, 2, 4 ... API processes on one Redis and on a Redis Cluster.

The load is the reserve benchmark's (`benchmarks/reserve.py`: `POST /api/v1/orders`, one
item, signed-in buyers rotated per request, one event of large capacity) against
`eventhunting api --workers N`, first on one redis-server, then on a local cluster of three
masters with a replica each (`tests/support/redis_cluster.py`), both with AOF and
`appendfsync always` as in production. Beside each curve, in the same run, the Redis
ceiling: `redis-benchmark` running EVALSHA of the same append script with the same
KEYS/ARGV shape as one hold (`benchmarks/store_append.py`), on the one Redis and on the
cluster master that owns the partition the script writes (one event's holds all go to one
partition, so to one master).

For each point it also reads CPU per hold: on the API side the CPU time of the
`eventhunting api` process and its server processes (/proc) over the measured run divided
by the holds; on the Redis side `INFO cpu` (used_cpu_sys + used_cpu_user) of every node.

    python -m benchmarks.scale                     # 1, 2, 4 processes; about 3 minutes
    python -m benchmarks.scale --processes 1,2,4,8 --seconds 10
    python -m benchmarks.scale --smoke             # a few seconds; the benchmark checks run it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis

from benchmarks.harness import (
    bench_environment,
    machine_description,
    running_api,
    running_bench_redis,
)
from benchmarks.reserve import order_load, prepare
from benchmarks.store_append import PARTITION, cpu_seconds_of, redis_ceiling
from eventhunting.store.keys import partition_of
from tests.support.servers import running_mongo_standin

READY_TIMEOUT_SECONDS = 60.0


@dataclass
class CpuUse:
    """CPU seconds spent over a measured run, per API process and by all Redis nodes."""

    api_by_process: dict[int, float] = field(default_factory=dict)
    redis: float = 0.0
    hot_node: float = 0.0
    """Of which the node holding the event's partition (its master on a cluster)."""

    @property
    def api(self) -> float:
        return sum(self.api_by_process.values())


@dataclass
class Point:
    """One measured run: `api_processes` server processes under the reserve load."""

    topology: str
    api_processes: int
    holds: int
    seconds: float
    holds_per_second: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    api_cpu_us_per_hold: float
    redis_cpu_us_per_hold: float
    """Every node, replicas included."""
    hot_node_cpu_us_per_hold: float
    """The node holding the event's partition alone: what one event's sale is bound by."""
    api_cpu_seconds_by_process: list[float]
    """CPU of each server process (the supervisor's own left out): how evenly they shared."""


@dataclass
class Ceiling:
    topology: str
    node: str
    per_second: float
    redis_cpu_us_per_append: float


@dataclass
class Curve:
    topology: str
    points: list[Point]
    ceiling: Ceiling


@dataclass
class Store:
    """Where the API keeps its events, and how to read what the Redis side spends."""

    topology: str
    url: str
    node_urls: list[str]
    node_of_partition: Callable[[int], str]
    """The URL of the node holding a partition: the one Redis, or the partition's master."""


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree = [root]
    for pid in tree:
        tree.extend(child for child, parent in parents.items() if parent == pid)
    return tree


def tree_cpu_seconds(root: int) -> dict[int, float]:
    cpu: dict[int, float] = {}
    for pid in process_tree(root):
        try:
            cpu[pid] = cpu_seconds_of(pid)
        except OSError:
            continue
    return cpu


def redis_cpu_seconds(node_urls: list[str]) -> float:
    """used_cpu_sys + used_cpu_user of every node, from INFO cpu."""
    total = 0.0
    for url in node_urls:
        with redis.Redis.from_url(url) as client:
            info = client.info("cpu")
        total += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return total


def redis_pid(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(client.info("server")["process_id"])


def redis_version(url: str) -> str:
    with redis.Redis.from_url(url) as client:
        return str(client.info("server")["redis_version"])


@contextmanager
def cpu_meter(
    api_pid: int, node_urls: list[str], hot_node_url: str, use: CpuUse
) -> Iterator[CpuUse]:
    """Fill `use` with the CPU the API's processes and the Redis nodes spent inside."""
    api_before = tree_cpu_seconds(api_pid)
    redis_before = redis_cpu_seconds(node_urls)
    hot_before = redis_cpu_seconds([hot_node_url])
    yield use
    use.redis = redis_cpu_seconds(node_urls) - redis_before
    use.hot_node = redis_cpu_seconds([hot_node_url]) - hot_before
    use.api_by_process = {
        pid: seconds - api_before.get(pid, 0.0)
        for pid, seconds in tree_cpu_seconds(api_pid).items()
    }


async def until_processes_answer(api_url: str, count: int) -> set[int]:
    """Probe /health/live on new connections until `count` server processes have answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS

    async def probe() -> int | None:
        try:
            async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
                response = await client.get("/health/live")
        except httpx.TransportError:
            return None
        return int(response.json()["pid"]) if response.status_code == 200 else None

    while time.monotonic() < deadline:
        pids = await asyncio.gather(*(probe() for _ in range(max(8, 2 * count))))
        seen.update(pid for pid in pids if pid is not None)
        if len(seen) >= count:
            return seen
        await asyncio.sleep(0.2)
    raise TimeoutError(f"only {len(seen)} of {count} API processes answered")


def measure_point(
    store: Store,
    environment: dict[str, str],
    tokens: list[str],
    body: bytes,
    processes: int,
    arguments: argparse.Namespace,
) -> Point:
    event_id = json.loads(body)["event_id"]
    hot_node_url = store.node_of_partition(partition_of(event_id, arguments.partitions))
    with running_api(environment, workers=processes) as (api_url, api):
        servers = asyncio.run(until_processes_answer(api_url, processes))
        use = CpuUse()
        measured = order_load(
            arguments.client,
            api_url,
            tokens,
            body,
            connections=arguments.connections,
            seconds=arguments.seconds,
            warmup_seconds=arguments.warmup,
            measured=lambda: cpu_meter(api.pid, store.node_urls, hot_node_url, use),
        )
    holds = measured.requests
    return Point(
        topology=store.topology,
        api_processes=processes,
        holds=holds,
        seconds=measured.seconds,
        holds_per_second=measured.rate,
        p50_ms=measured.p50_ms,
        p99_ms=measured.p99_ms,
        errors=measured.errors,
        api_cpu_us_per_hold=use.api / holds * 1e6 if holds else 0.0,
        redis_cpu_us_per_hold=use.redis / holds * 1e6 if holds else 0.0,
        hot_node_cpu_us_per_hold=use.hot_node / holds * 1e6 if holds else 0.0,
        api_cpu_seconds_by_process=sorted(
            (round(use.api_by_process.get(pid, 0.0), 3) for pid in servers), reverse=True
        ),
    )


def measure_curve(store: Store, mongodb_url: str, arguments: argparse.Namespace) -> Curve:
    environment = bench_environment(
        store.url, mongodb_url, {"EVENTHUNTING_PARTITIONS": str(arguments.partitions)}
    )
    tokens, body = asyncio.run(prepare(environment, arguments.buyers))
    points = []
    for processes in arguments.processes:
        point = measure_point(store, environment, tokens, body, processes, arguments)
        print(describe(point), flush=True)
        points.append(point)
    # Last, on the same server: redis_ceiling empties the node first.
    ceiling_node_url = store.node_of_partition(PARTITION)
    node = urlsplit(ceiling_node_url)
    rate = redis_ceiling(
        ceiling_node_url,
        node.port or 6379,
        redis_pid(ceiling_node_url),
        arguments.connections,
        arguments.ceiling_requests,
    )
    ceiling = Ceiling(
        store.topology, f"{node.hostname}:{node.port}", rate.per_second, rate.redis_cpu_us
    )
    print(
        f"{store.topology:8} redis-benchmark EVALSHA -c {arguments.connections} on"
        f" {ceiling.node}: {ceiling.per_second:,.0f}/s"
        f" (Redis CPU {ceiling.redis_cpu_us_per_append:.0f} µs per append)",
        flush=True,
    )
    return Curve(store.topology, points, ceiling)


@contextmanager
def single_redis(fsync: str) -> Iterator[Store]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-") as data_dir,
        running_bench_redis(Path(data_dir), fsync=fsync) as url,
    ):
        yield Store("redis", url, [url], lambda _: url)


@contextmanager
def local_cluster() -> Iterator[Store]:
    from tests.support.redis_cluster import start_local_cluster

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as data_dir:
        cluster = start_local_cluster(Path(data_dir), masters=3, replicas=1)
        try:
            yield Store(
                "cluster",
                cluster.url,
                [node.url for node in cluster.nodes],
                lambda partition: cluster.master_of_partition(partition).url,
            )
        finally:
            cluster.stop()


def cluster_available() -> str | None:
    """Why the cluster side cannot run on this tree, or None when it can."""
    try:
        import tests.support.redis_cluster  # noqa: F401
    except ImportError:
        return "tests/support/redis_cluster.py is not in this tree"
    return None


def format_load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


def describe(point: Point) -> str:
    shares = " / ".join(f"{seconds:.1f}" for seconds in point.api_cpu_seconds_by_process)
    return (
        f"{point.topology:8} {point.api_processes:>3} API processes {point.holds_per_second:>8,.0f}"
        f" holds/s  p50 {point.p50_ms:6.1f} ms  p99 {point.p99_ms:6.1f} ms"
        f"  CPU per hold: API {point.api_cpu_us_per_hold:5.0f} µs,"
        f" Redis {point.redis_cpu_us_per_hold:4.0f} µs"
        f" (its node {point.hot_node_cpu_us_per_hold:.0f})"
        f"  (CPU s per server process: {shares})"
        f"  {point.errors or ''}"
    )


def process_counts(text: str) -> list[int]:
    counts = [int(word) for word in text.split(",")]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("process counts are whole numbers >= 1, e.g. 1,2,4")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=process_counts, default=[1, 2, 4])
    parser.add_argument("--topology", choices=["both", "redis", "cluster"], default="both")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured, per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="not measured, per point")
    parser.add_argument("--buyers", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--ceiling-requests", type=int, default=100_000)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--fsync", choices=["always", "everysec", "no"], default="always")
    parser.add_argument("--smoke", action="store_true", help="a few seconds; checks it runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.processes, arguments.seconds, arguments.warmup = [1, 2], 1.0, 0.5
        arguments.buyers, arguments.ceiling_requests = 100, 5_000
    if arguments.client == "auto":
        arguments.client = "wrk" if shutil.which("wrk") else "python"

    topologies = ["redis", "cluster"] if arguments.topology == "both" else [arguments.topology]
    not_run: dict[str, str] = {}
    if "cluster" in topologies and (reason := cluster_available()) is not None:
        not_run["cluster"] = reason
        topologies.remove("cluster")
    print(f"machine: {machine_description()}")
    print(
        f"client: {arguments.client}, {arguments.connections} connections,"
        f" {arguments.seconds:g} s per point after {arguments.warmup:g} s of warm-up;"
        f" appendfsync {arguments.fsync} on every node"
    )
    curves: list[Curve] = []
    version = ""
    load_before = os.getloadavg()
    with running_mongo_standin() as mongodb_url:
        for topology in topologies:
            with ExitStack() as stack:
                store = stack.enter_context(
                    single_redis(arguments.fsync) if topology == "redis" else local_cluster()
                )
                version = redis_version(store.node_urls[0])
                curves.append(measure_curve(store, mongodb_url, arguments))
    load_after = os.getloadavg()
    print(
        f"load average (1, 5, 15 min) before: {format_load(load_before)};"
        f" after: {format_load(load_after)}"
    )
    for topology, reason in not_run.items():
        print(f"{topology}: not run: {reason}")
    for curve in curves:
        print_curve(curve)

    report: dict[str, Any] = {
        "machine": machine_description(),
        "redis_version": version,
        "client": arguments.client,
        "connections": arguments.connections,
        "seconds": arguments.seconds,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "curves": [asdict(curve) for curve in curves],
        "not_run": not_run,
    }
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2))
    failed = [point for curve in curves for point in curve.points if point.errors]
    if failed:
        print("some runs had errors", file=sys.stderr)
        return 1
    return 0


def print_curve(curve: Curve) -> None:
    ceiling = curve.ceiling.per_second
    print(
        f"\n{curve.topology}: ceiling {ceiling:,.0f} appends/s"
        f" (redis-benchmark EVALSHA on {curve.ceiling.node})"
    )
    print(
        "API processes  holds/s  of ceiling  vs 1 process  API µs/hold  Redis µs/hold"
        "  event's node µs/hold"
    )
    first = curve.points[0].holds_per_second if curve.points else 0.0
    for point in curve.points:
        print(
            f"{point.api_processes:>13}  {point.holds_per_second:>7,.0f}"
            f"  {point.holds_per_second / ceiling if ceiling else 0.0:>10.2f}"
            f"  {point.holds_per_second / first if first else 0.0:>12.2f}"
            f"  {point.api_cpu_us_per_hold:>11.0f}  {point.redis_cpu_us_per_hold:>13.0f}"
            f"  {point.hot_node_cpu_us_per_hold:>20.0f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
