"""Starts a private system for benchmarks and prepares buyers and an event in it."""

from __future__ import annotations

import os
import platform
import secrets
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eventhunting.bootstrap import Services, build_services
from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import CreateEvent, NewTicketType, PublishEvent, Venue
from eventhunting.settings import load_settings
from tests.support.servers import (
    free_port,
    redis_server_binary,
    running_mongo_standin,
    wait_for_port,
)
from tests.support.system import stop_process, system_environment


@dataclass
class BenchSystem:
    api_url: str
    hello_url: str | None
    environment: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


@contextmanager
def running_bench_redis(data_dir: Path, *, fsync: str) -> Iterator[str]:
    """redis-server with AOF and the given appendfsync policy (`always` as in production)."""
    port = free_port()
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir),
            "--appendonly", "yes",
            "--appendfsync", fsync,
            "--save", "",
            "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, process=process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)


def uvicorn_command(app: str, port: int) -> list[str]:
    """The server settings of `eventhunting api`: one uvicorn process, uvloop and httptools."""
    return [
        sys.executable, "-m", "uvicorn", app,
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def bench_environment(
    redis_url: str, mongodb_url: str, overrides: dict[str, str] | None = None
) -> dict[str, str]:
    """The settings of a benchmark's processes: a database of their own, a known admin."""
    return system_environment(
        redis_url,
        mongodb_url,
        f"bench_{uuid.uuid4().hex[:8]}",
        {
            "EVENTHUNTING_PASSWORD_HASH_PROFILE": "test",
            "EVENTHUNTING_BOOTSTRAP_ADMIN_EMAIL": "admin@bench.test",
            "EVENTHUNTING_BOOTSTRAP_ADMIN_PASSWORD": secrets.token_urlsafe(16),
            **(overrides or {}),
        },
    )


@contextmanager
def running_api(
    environment: dict[str, str], *, workers: int = 1
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`eventhunting api --workers N` on a free port: (its URL, the command's process)."""
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "eventhunting.cli", "api", "--port", str(port),
         "--workers", str(workers)],
        env=environment,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=30, process=api)
        yield f"http://127.0.0.1:{port}", api
    finally:
        stop_process(api, timeout=30)


@contextmanager
def running_bench_system(
    *,
    fsync: str = "always",
    hello: bool = True,
    overrides: dict[str, str] | None = None,
) -> Iterator[BenchSystem]:
    """Redis, the MongoDB stand-in, `eventhunting api` and (optionally) the hello-world app."""
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        redis_url = stack.enter_context(running_bench_redis(data_dir, fsync=fsync))
        mongodb_url = stack.enter_context(running_mongo_standin())
        environment = bench_environment(redis_url, mongodb_url, overrides)
        hello_process = None
        if hello:
            hello_port = free_port()
            hello_process = subprocess.Popen(
                uvicorn_command("benchmarks.hello:app", hello_port),
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            )
            stack.callback(stop_process, hello_process)
        api_url, api = stack.enter_context(running_api(environment))
        system = BenchSystem(api_url=api_url, hello_url=None, environment=environment)
        system.processes.append(api)
        if hello_process is not None:
            system.processes.append(hello_process)
            wait_for_port(hello_port, timeout=30, process=hello_process)
            system.hello_url = f"http://127.0.0.1:{hello_port}"
        yield system


async def bench_services(system: BenchSystem) -> Services:
    return await build_services(load_settings(system.environment, dotenv=None))


async def on_sale_event(
    services: Services, *, quantity: int, price: int = 150_000, limit: int | None = None
) -> tuple[str, str]:
    """A published event with one ticket type of `quantity`; (event id, ticket type id)."""
    organizer = Actor(account_id=f"organizer-{uuid.uuid4().hex[:8]}")
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    created = await services.catalog.create_event(
        CreateEvent(
            by=organizer,
            title="Benchmark night",
            description="",
            venue=Venue(name="Stadium", address="1 Le Duan"),
            province="ho-chi-minh",
            starts_at=starts_at,
            ends_at=starts_at + timedelta(hours=3),
            max_tickets_per_customer=limit,
            ticket_types=(NewTicketType(name="GA", price=price, quantity=quantity),),
        )
    )
    published = await services.catalog.publish_event(
        PublishEvent(event_id=created.event.id, by=organizer)
    )
    event = published.event
    return event.id, event.ticket_types[0].id


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kilobytes = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kilobytes / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}"
    )


def quantiles_ms(latencies: Sequence[float]) -> tuple[float, float]:
    if not latencies:
        return 0.0, 0.0
    ordered = sorted(latencies)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))] * 1000

    return at(0.50), at(0.99)
