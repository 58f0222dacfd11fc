"""A worker process serves its consumer-group metrics for Prometheus when asked to."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import redis

from tests.support.servers import free_port, wait_for_port
from tests.support.system import stop_process, system_environment

# A Redis database of its own: other tests leave consumer groups with pending entries behind.
WORKER_METRICS_DATABASE = 7


def test_worker_serves_lag_and_pending_per_partition(redis_url: str, mongodb_url: str) -> None:
    own_database = redis_url.rsplit("/", 1)[0] + f"/{WORKER_METRICS_DATABASE}"
    redis.Redis.from_url(own_database).flushdb()
    port = free_port()
    environment = system_environment(own_database, mongodb_url, "worker_metrics")
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "eventhunting.cli", "worker", "projector", "archiver",
            "--metrics-port", str(port),
        ],
        env=environment,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=30, process=worker)
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            # Each group exports once it holds its partitions' leases; they start in parallel.
            if all(
                f'eventhunting_consumer_lag{{group="{group}",partition="0"}}' in text
                for group in ("archiver", "projector")
            ):
                break
            time.sleep(0.2)
        assert 'eventhunting_consumer_lag{group="projector",partition="0"}' in text
        assert 'eventhunting_consumer_pending{group="archiver",partition="0"}' in text
        assert "eventhunting_consumer_dead_lettered_total" in text
    finally:
        stop_process(worker)
    assert worker.returncode == 0
