"""A worker process for the pipeline fault test: projector and archiver with injected faults."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect

from eventhunting.projections.base import PROJECTOR_GROUP, Projector
from eventhunting.store.archive import ARCHIVER_GROUP, Archiver, create_event_indexes
from eventhunting.store.consumer_groups import (
    BatchHandler,
    ConsumerConfig,
    ConsumerGroup,
    Lease,
    LogEntry,
    envelope_decoder,
    raw_entry,
    unique_consumer_name,
)
from eventhunting.store.envelope import EventEnvelope
from eventhunting.store.redis_client import connect_redis
from tests.support.basket_projection import BasketProjection
from tests.support.store_events import store_test_registry

# MongoDB clients of these workers carry this app name, so failpoints can target them alone.
WORKER_APP_NAME = "pipeline-fault-worker"


class FaultyHandler:
    """Runs a real batch handler but first, now and then, fails like a flaky dependency.

    - a whole batch fails with an outage error (`batch_fault_rate`);
    - a batch is applied and then reported failed (`after_commit_fault_rate`), as when a
      worker dies between its commit and its acknowledgement, so it is delivered again;
    - an entry whose position hashes to 0 mod `single_fault_modulus` fails the first time this
      process sees it with an ordinary error (counted towards dead-lettering, but never
      often enough to reach it);
    and every batch handled is written to `journal` as one JSON line (consumer, group,
    partition, positions, start and end on the machine's monotonic clock).
    """

    def __init__(
        self,
        inner: Any,
        *,
        group: str,
        consumer: str,
        positions_of: Any,
        batch_fault_rate: float,
        after_commit_fault_rate: float,
        single_fault_modulus: int,
        journal: Path,
        seed: int,
    ) -> None:
        self.inner = inner
        self.group = group
        self.consumer = consumer
        self.positions_of = positions_of
        self.batch_fault_rate = batch_fault_rate
        self.after_commit_fault_rate = after_commit_fault_rate
        self.single_fault_modulus = single_fault_modulus
        self.journal = journal
        self.random = random.Random(seed)
        self.failed_once: set[str] = set()

    async def __call__(self, batch: list[Any], lease: Lease) -> None:
        positions: list[str] = self.positions_of(batch)
        if len(batch) > 1 and self.random.random() < self.batch_fault_rate:
            raise AutoReconnect("injected: the read-model database dropped the connection")
        for position in positions:
            if (
                zlib.crc32(position.encode()) % self.single_fault_modulus == 0
                and position not in self.failed_once
            ):
                self.failed_once.add(position)
                raise RuntimeError(f"injected: a one-off failure on {position}")
        started = time.monotonic()
        await self.inner(batch, lease)
        record = {
            "group": self.group,
            "consumer": self.consumer,
            "partition": lease.partition,
            "token": lease.token,
            "positions": positions,
            "started": started,
            "ended": time.monotonic(),
        }
        with self.journal.open("a") as journal:
            journal.write(json.dumps(record) + "\n")
        if self.random.random() < self.after_commit_fault_rate:
            raise AutoReconnect("injected: the connection dropped after the commit")


class WorkerProcesses:
    """Worker processes of this module, started, stopped and killed as a test says."""

    def __init__(
        self,
        root: Path,
        *,
        redis_url: str,
        mongodb_url: str,
        database: str,
        partitions: int,
        journal: Path,
        options: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.arguments = [
            "--redis",
            redis_url,
            "--mongodb",
            mongodb_url,
            "--database",
            database,
            "--partitions",
            str(partitions),
            "--journal",
            str(journal),
            *options,
        ]
        self.processes: list[subprocess.Popen[str]] = []
        self.consumers: list[str] = []
        self.started = 0

    def start(self) -> str:
        """Start one more worker; its consumer name."""
        self.started += 1
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.pipeline_worker",
                *self.arguments,
                "--seed-offset",
                str(self.started),
            ],
            cwd=self.root,
            env={**os.environ, "PYTHONPATH": str(self.root)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        consumer = str(json.loads(process.stdout.readline())["consumer"])
        self.processes.append(process)
        self.consumers.append(consumer)
        return consumer

    def kill(self, index: int) -> str:
        """SIGKILL one worker; its consumer name."""
        process = self.processes.pop(index)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        return self.consumers.pop(index)

    def stop(self, index: int) -> int:
        """SIGTERM one worker and wait for it; its exit code."""
        process = self.processes.pop(index)
        self.consumers.pop(index)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=30)

    def stop_all(self) -> list[int]:
        return [self.stop(0) for _ in list(self.processes)]

    def kill_all(self) -> None:
        while self.processes:
            self.kill(0)


async def main(arguments: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    redis = connect_redis(arguments.redis, max_connections=64, timeout=10)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        arguments.mongodb, tz_aware=True, appname=WORKER_APP_NAME
    )
    database = mongo[arguments.database]
    consumer = unique_consumer_name()
    seed = arguments.seed + arguments.seed_offset
    config = ConsumerConfig(
        block_ms=50,
        count=arguments.count,
        max_deliveries=5,
        retry_delay_ms=50,
        lease_ms=arguments.lease_ms,
    )
    journal = Path(arguments.journal)
    groups: list[ConsumerGroup[Any]] = []
    if "projector" in arguments.groups:
        projection = BasketProjection()
        projector: BatchHandler[EventEnvelope] = FaultyHandler(
            Projector(database, [projection]),
            group=PROJECTOR_GROUP,
            consumer=consumer,
            positions_of=lambda batch: [event.position for event in batch],
            batch_fault_rate=arguments.batch_fault_rate,
            after_commit_fault_rate=arguments.after_commit_fault_rate,
            single_fault_modulus=arguments.single_fault_modulus,
            journal=journal,
            seed=seed,
        )
        groups.append(
            ConsumerGroup(
                redis,
                PROJECTOR_GROUP,
                consumer,
                arguments.partitions,
                projector,
                config,
                decode=envelope_decoder(store_test_registry),
            )
        )
    if "archiver" in arguments.groups:
        archiver: BatchHandler[LogEntry] = FaultyHandler(
            Archiver(database),
            group=ARCHIVER_GROUP,
            consumer=consumer,
            positions_of=lambda batch: [entry.position for entry in batch],
            batch_fault_rate=arguments.batch_fault_rate,
            after_commit_fault_rate=arguments.after_commit_fault_rate,
            single_fault_modulus=arguments.single_fault_modulus,
            journal=journal,
            seed=seed + 1,
        )
        groups.append(
            ConsumerGroup(
                redis,
                ARCHIVER_GROUP,
                consumer,
                arguments.partitions,
                archiver,
                config,
                decode=raw_entry,
            )
        )
    print(json.dumps({"consumer": consumer, "pid": os.getpid()}), flush=True)
    try:
        await asyncio.gather(
            *(
                group.run(
                    stop,
                    prepare=(
                        (lambda: create_event_indexes(database))
                        if group.group == ARCHIVER_GROUP
                        else None
                    ),
                )
                for group in groups
            )
        )
    finally:
        await redis.aclose()
        await mongo.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--mongodb", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--groups", nargs="+", default=["projector", "archiver"])
    parser.add_argument("--journal", required=True)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--lease-ms", type=int, default=1_000)
    parser.add_argument("--batch-fault-rate", type=float, default=0.0)
    parser.add_argument("--after-commit-fault-rate", type=float, default=0.0)
    parser.add_argument("--single-fault-modulus", type=int, default=1_000_000_007)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seed-offset", type=int, default=0)
    asyncio.run(main(parser.parse_args()))
