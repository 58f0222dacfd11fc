"""Each command checks only the settings it uses: replay and restore need no JWT secret."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support.system import with_database


@pytest.mark.parametrize(
    ("command", "reported"),
    [
        (["replay"], "replayed 0 events"),
        (["replay", "--jobs", "3"], "replayed 0 events"),
        (["restore"], "restored 0 events"),
    ],
)
async def test_maintenance_command_runs_without_a_jwt_secret(
    command: list[str],
    reported: str,
    store_redis_url: str,
    store_redis: aioredis.Redis,
    mongodb_url: str,
    mongo_database_name: str,
    tmp_path: Path,
) -> None:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "EVENTHUNTING_REDIS_URL": store_redis_url,
        "EVENTHUNTING_MONGODB_URL": with_database(mongodb_url, mongo_database_name),
        "EVENTHUNTING_PARTITIONS": "4",
        "EVENTHUNTING_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventhunting.cli",
        *command,
        env=environment,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, raw_errors = await asyncio.wait_for(process.communicate(), timeout=60)
    errors = raw_errors.decode()
    assert process.returncode == 0, errors
    assert reported in errors
    assert "JWT_SECRET" not in errors
    # It really ran against this Redis: restore leaves the archiver's groups behind.
    if command == ["restore"]:
        assert await store_redis.exists("{p0}:log")


@pytest.mark.parametrize("jobs", ["0", "1025", "two"])
async def test_replay_refuses_a_job_count_it_cannot_run(jobs: str, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventhunting.cli",
        "replay",
        "--jobs",
        jobs,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, raw_errors = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert "argument --jobs" in raw_errors.decode()
