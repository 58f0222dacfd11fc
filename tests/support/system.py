"""Run the API and workers as separate real processes, as deployed, for system tests."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from tests.support.servers import free_port, wait_for_port

CLIENT_KEEPALIVE_SECONDS = 1.0
"""How long test clients keep an idle connection: under uvicorn's 5 s keep-alive, so a
request after a pause never goes out on a connection the server is closing (httpx's default,
5 s, races it and fails with ReadError)."""


def with_database(mongodb_url: str, database: str) -> str:
    """The same MongoDB URL with `database` as its path."""
    parts = urlsplit(mongodb_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def system_environment(
    redis_url: str, mongodb_url: str, database: str, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("EVENTHUNTING_")
    }
    environment.update(
        {
            "EVENTHUNTING_REDIS_URL": redis_url,
            "EVENTHUNTING_MONGODB_URL": with_database(mongodb_url, database),
            "EVENTHUNTING_JWT_SECRET": secrets.token_urlsafe(32),
            "EVENTHUNTING_BOOTSTRAP_ADMIN_EMAIL": "admin@eventhunting.test",
            "EVENTHUNTING_BOOTSTRAP_ADMIN_PASSWORD": secrets.token_urlsafe(16),
            "EVENTHUNTING_PASSWORD_HASH_PROFILE": "test",
            # The test client stands in for a reverse proxy: its X-Forwarded-For names clients.
            "EVENTHUNTING_TRUSTED_PROXIES": "127.0.0.1",
            # A merchant of its own, so payment routes answer as in production.
            "EVENTHUNTING_VNPAY_TMN_CODE": "EVHSYS01",
            "EVENTHUNTING_VNPAY_HASH_SECRET": secrets.token_urlsafe(24),
            "EVENTHUNTING_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    environment.update(overrides or {})
    return environment


@dataclass
class RunningSystem:
    base_url: str
    environment: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_system(
    redis_url: str,
    mongodb_url: str,
    database: str,
    *,
    workers: tuple[str, ...] = (),
    overrides: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Iterator[RunningSystem]:
    """Start `eventhunting api` and `eventhunting worker NAME...` as child processes.

    `port` is the API's (a free one by default): give it when another process, started
    first, must know the API's URL (the VNPAY stand-in's IPN URL).
    """
    environment = system_environment(redis_url, mongodb_url, database, overrides)
    port = port or free_port()
    system = RunningSystem(base_url=f"http://127.0.0.1:{port}", environment=environment)
    with ExitStack() as stack:
        api = subprocess.Popen(
            [sys.executable, "-m", "eventhunting.cli", "api", "--port", str(port)],
            env=environment,
        )
        stack.callback(stop_process, api)
        system.processes["api"] = api
        if workers:
            worker = subprocess.Popen(
                [sys.executable, "-m", "eventhunting.cli", "worker", *workers], env=environment
            )
            stack.callback(stop_process, worker)
            system.processes["workers"] = worker
        wait_for_port(port, timeout=30, process=api)
        yield system


class WorkerProcess:
    """`eventhunting worker NAME...` as a child process a test may kill and start again."""

    def __init__(self, environment: Mapping[str, str], *names: str) -> None:
        self.environment = dict(environment)
        self.names = names
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eventhunting.cli", "worker", *self.names],
            env=self.environment,
        )

    def kill(self) -> None:
        """SIGKILL: no graceful stop, leases and pending entries are left behind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
