"""Private Redis and MongoDB stand-in servers for tests, started as real processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "redis-server is not on PATH; the test command installs it"
            " (apt-get install redis-server)"
        )
    return found


@contextmanager
def running_redis(data_dir: Path) -> Iterator[str]:
    """Start a private redis-server with AOF fsync on every write; yield its URL."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--stream-node-max-bytes",
            "512",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def running_mongo_standin() -> Iterator[str]:
    """Start the MongoDB stand-in as a separate process; yield its URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventhunting.standins.mongo",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=None,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_port(port, process=process)
        yield f"mongodb://127.0.0.1:{port}/?directConnection=true"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class SmtpSink:
    """Where a running SMTP sink listens: SMTP on `smtp_port`, inbox and API at `http_url`."""

    smtp_port: int
    http_url: str
    process: subprocess.Popen[bytes]

    @property
    def smtp_url(self) -> str:
        return f"smtp://127.0.0.1:{self.smtp_port}"


@contextmanager
def running_smtp_sink(data_dir: Path | None = None, *extra_arguments: str) -> Iterator[SmtpSink]:
    """Start the SMTP sink stand-in as a separate process on free ports; yield where it is."""
    smtp_port, http_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventhunting.standins.smtp",
            "--host",
            "127.0.0.1",
            "--smtp-port",
            str(smtp_port),
            "--http-port",
            str(http_port),
            *(["--data-dir", str(data_dir)] if data_dir is not None else []),
            *extra_arguments,
        ],
        stdout=subprocess.DEVNULL,
        stderr=None,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_port(smtp_port, process=process)
        wait_for_port(http_port, process=process)
        yield SmtpSink(smtp_port, f"http://127.0.0.1:{http_port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
