"""`eventhunting api --workers N`: N server processes on one port, replaced when one dies."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port, running_redis, wait_for_port
from tests.support.system import stop_process, system_environment

pytestmark = pytest.mark.system

PROBES_AT_ONCE = 8


def parent_of(pid: int) -> int:
    """The parent process id of a running process (Linux /proc)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def probe(base_url: str, access_token: str) -> int:
    """On one new connection: which process answers, and that it serves a signed-in caller."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        live = await client.get("/health/live")
        assert live.status_code == 200, live.text
        me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {access_token}"})
        assert me.status_code == 200, me.text
        assert "admin" in me.json()["roles"]
        pid: int = live.json()["pid"]
        return pid


async def probe_until(
    base_url: str, access_token: str, processes: int, seconds: float = 60
) -> tuple[set[int], int]:
    """Probe on new connections until `processes` distinct pids answered; (pids, probes sent,
    every one answered)."""
    seen: set[int] = set()
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pids = await asyncio.gather(*(probe(base_url, access_token) for _ in range(PROBES_AT_ONCE)))
        sent += len(pids)
        seen.update(pids)
        if len(seen) >= processes:
            return seen, sent
    raise AssertionError(f"only processes {sorted(seen)} answered in {seconds} s")


@pytest.fixture
def api_with_two_workers(
    tmp_path: Path, mongodb_url: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, str], Path]]:
    """`eventhunting api --workers 2` on a Redis of its own, logging at INFO to a file."""
    with running_redis(tmp_path / "redis") as redis_url:
        environment = system_environment(
            redis_url,
            mongodb_url,
            f"workers_{uuid.uuid4().hex[:8]}",
            {"EVENTHUNTING_LOG_LEVEL": "INFO"},
        )
        admin = {
            "email": environment["EVENTHUNTING_BOOTSTRAP_ADMIN_EMAIL"],
            "password": environment["EVENTHUNTING_BOOTSTRAP_ADMIN_PASSWORD"],
        }
        port = free_port()
        log = tmp_path / "api.log"
        with log.open("wb") as log_file:
            api = subprocess.Popen(
                [sys.executable, "-m", "eventhunting.cli", "api", "--port", str(port),
                 "--workers", "2"],
                env=environment,
                stderr=log_file,
                # A process group of its own, as a terminal gives a command (for Ctrl-C).
                start_new_session=True,
            )  # fmt: skip
        try:
            wait_for_port(port, timeout=30, process=api)
            yield api, f"http://127.0.0.1:{port}", admin, log
        finally:
            stop_process(api, timeout=30)


async def test_two_processes_serve_and_a_killed_one_is_replaced(
    api_with_two_workers: tuple[subprocess.Popen[bytes], str, dict[str, str], Path],
) -> None:
    api, base_url, admin, log = api_with_two_workers
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        signed_in = await client.post("/api/v1/auth/login", json=admin)
    assert signed_in.status_code == 200, signed_in.text
    access_token = signed_in.json()["access_token"]
    workers, sent = await probe_until(base_url, access_token, 2)
    assert len(workers) == 2
    assert {parent_of(pid) for pid in workers} == {api.pid}

    killed = min(workers)
    os.kill(killed, signal.SIGKILL)
    # The other process keeps answering on the shared port while the dead one is replaced.
    seen_after, sent_after = await probe_until(base_url, access_token, 2)
    sent += sent_after
    replacement = seen_after - workers
    assert killed not in seen_after
    assert len(replacement) == 1
    assert parent_of(replacement.pop()) == api.pid

    # Any process answers /metrics for all of them, the killed one included.
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        metrics = (await client.get("/metrics")).text
    served = re.search(
        r'^eventhunting_http_requests_total\{method="GET",route="/health/live",status="200"\}'
        r" ([\d.e+]+)$",
        metrics,
        re.MULTILINE,
    )
    assert served is not None, metrics
    assert float(served.group(1)) == sent

    api.send_signal(signal.SIGTERM)
    assert api.wait(timeout=30) == 0
    assert not any(is_running(pid) for pid in workers | seen_after)

    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    requests = [r for r in records if r["event"] == "request" and r["path"] == "/health/live"]
    assert len(requests) == sent
    assert any(f"[{killed}] died" in r["event"] for r in records)
    # The two live processes (the survivor and the replacement) shut down gracefully.
    assert [r["event"] for r in records].count("Application shutdown complete.") == 2


async def test_ctrl_c_stops_every_process_gracefully(
    api_with_two_workers: tuple[subprocess.Popen[bytes], str, dict[str, str], Path],
) -> None:
    api, base_url, admin, log = api_with_two_workers
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        signed_in = await client.post("/api/v1/auth/login", json=admin)
    workers, _ = await probe_until(base_url, signed_in.json()["access_token"], 2)

    # Ctrl-C in a terminal sends SIGINT to every process of the foreground group.
    os.killpg(api.pid, signal.SIGINT)
    assert api.wait(timeout=30) == 0
    assert not any(is_running(pid) for pid in workers)
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    # Each server process ran its shutdown (lifespan) to the end.
    assert events.count("Application shutdown complete.") == 2


@pytest.mark.parametrize("count", ["0", "-1", "two"])
def test_a_worker_count_below_one_or_not_a_number_is_refused(count: str) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "eventhunting.cli", "api", "--workers", count],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert f"argument --workers: {count!r} is not a process count" in finished.stderr
