"""`eventhunting dev` brings the whole system up, restarts crashed children and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eventhunting.tickets.qr_keys import private_key_text
from tests.support.redis_cluster import LocalCluster
from tests.support.servers import free_port

pytestmark = pytest.mark.system


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once reaped or defunct.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def read_banner(supervisor: subprocess.Popen[str]) -> str:
    """The lines dev prints once everything is up, through "Press Ctrl-C to stop."."""
    assert supervisor.stdout is not None
    lines: list[str] = []
    while not lines or lines[-1] != "Press Ctrl-C to stop.":
        line = supervisor.stdout.readline()
        if not line:
            raise AssertionError(f"dev stopped printing before its banner ended: {lines}")
        lines.append(line.rstrip("\n"))
    return "\n".join(lines)


def banner_url(banner: str, label: str) -> str:
    return next(line.split()[-1] for line in banner.splitlines() if line.startswith(f"  {label} "))


def child_environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def process_table(data_dir: Path) -> dict[str, int]:
    path = data_dir / "processes.json"
    if not path.exists():
        return {}
    children: dict[str, int] = json.loads(path.read_text())["children"]
    return children


@contextmanager
def dev_system(
    data_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("EVENTHUNTING_")
    }
    environment.update(extra_env or {})
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventhunting.cli",
            "dev",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=environment,
        # As a shell starts a background job: SIGINT ignored. Ctrl-C must still stop it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield supervisor, f"http://127.0.0.1:{port}"
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(timeout=30)
            except subprocess.TimeoutExpired:
                supervisor.kill()
                supervisor.wait()


def test_dev_starts_everything_restarts_a_crashed_child_and_ctrl_c_stops_all(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    with dev_system(data_dir) as (supervisor, base_url):
        wait_for(lambda: get_status(f"{base_url}/health/ready") == 200, 60, "/health/ready")
        children = process_table(data_dir)
        assert {"redis", "mongo-standin", "smtp-sink", "api"} <= set(children)
        assert all(alive(pid) for pid in children.values())
        banner = read_banner(supervisor)
        inbox_url = banner_url(banner, "Mail inbox")
        wait_for(lambda: get_status(inbox_url) == 200, 30, "the mail inbox")
        with urllib.request.urlopen(inbox_url, timeout=5) as inbox:
            assert inbox.status == 200
            assert "SMTP sink" in inbox.read().decode()
        smtp_url = child_environment(children["api"])["EVENTHUNTING_SMTP_URL"]
        assert banner_url(banner, "SMTP") == smtp_url
        qr_key_file = data_dir / "qr-signing-key"
        assert banner_url(banner, "QR signing key") == str(qr_key_file)
        qr_key = child_environment(children["api"])["EVENTHUNTING_QR_SIGNING_KEY"]
        assert qr_key_file.read_text().strip() == qr_key
        host, smtp_port = smtp_url.removeprefix("smtp://").split(":")
        with smtplib.SMTP(host, int(smtp_port), timeout=5) as sink:
            assert sink.noop()[0] == 250

        crashed = children["api"]
        os.kill(crashed, signal.SIGKILL)
        wait_for(
            lambda: (
                process_table(data_dir).get("api", crashed) != crashed
                and get_status(f"{base_url}/health/ready") == 200
            ),
            30,
            "the API to be restarted",
        )
        all_pids = {**children, **process_table(data_dir)}

        supervisor.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert supervisor.wait(timeout=30) == 0
        assert supervisor.stdout is not None
        supervisor.stdout.read()
        assert "EventHunting is running" in banner
        assert f"{base_url}/api/v1" in banner
    leftovers = [name for name, pid in all_pids.items() if pid != crashed and alive(pid)]
    assert leftovers == []
    assert not (data_dir / "processes.json").exists()


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.cluster)])
def configured_redis_url(request: pytest.FixtureRequest) -> str:
    """A configured Redis: one server, or a Redis Cluster (`redis+cluster://` seed nodes)."""
    if request.param == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        return cluster.url
    return str(request.getfixturevalue("redis_url"))


def test_dev_uses_a_configured_redis_and_smtp_server_and_stops_cleanly_on_sigterm(
    tmp_path: Path, configured_redis_url: str
) -> None:
    data_dir = tmp_path / "data"
    configured = {
        "EVENTHUNTING_REDIS_URL": configured_redis_url,
        "EVENTHUNTING_SMTP_URL": "smtp://127.0.0.1:1",
        "EVENTHUNTING_QR_SIGNING_KEY": private_key_text(Ed25519PrivateKey.generate()),
    }
    with dev_system(data_dir, configured) as (supervisor, base_url):
        wait_for(lambda: get_status(f"{base_url}/health/ready") == 200, 60, "/health/ready")
        children = process_table(data_dir)
        assert "redis" not in children
        assert "smtp-sink" not in children
        api_environment = child_environment(children["api"])
        assert api_environment["EVENTHUNTING_SMTP_URL"] == "smtp://127.0.0.1:1"
        configured_key = configured["EVENTHUNTING_QR_SIGNING_KEY"]
        assert api_environment["EVENTHUNTING_QR_SIGNING_KEY"] == configured_key
        assert not (data_dir / "qr-signing-key").exists()
        assert "api" in children
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
    assert [name for name, pid in children.items() if alive(pid)] == []


def test_dev_with_a_bad_setting_exits_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventhunting.cli", "dev", "--data-dir", str(tmp_path)],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("EVENTHUNTING_")},
            "EVENTHUNTING_REDIS_URL": "redis://127.0.0.1:1/0",
            "EVENTHUNTING_PARTITIONS": "zero",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "eventhunting: EVENTHUNTING_PARTITIONS is invalid: Expected `int`, got `str`"
    )
