"""The stand-in's --data-file keeps data across restarts (a property of the stand-in only)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from tests.support.servers import free_port, wait_for_port

Doc = dict[str, Any]

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("EVENTHUNTING_TEST_MONGODB_URL")),
    reason="persistence across restarts is a property of the stand-in process",
)


@contextmanager
def standin(
    data_file: Path, stop: signal.Signals = signal.SIGTERM
) -> Iterator[tuple[str, list[str]]]:
    """Run the stand-in on data_file; yield its URL and (after stopping) its log lines."""
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
            "--data-file",
            str(data_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    try:
        wait_for_port(port, process=process)
        yield f"mongodb://127.0.0.1:{port}/?directConnection=true", log
    finally:
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=15)
        log.extend(stderr.splitlines())
        if stop == signal.SIGTERM:
            assert process.returncode == 0, stderr


def test_data_survives_a_restart(tmp_path: Path) -> None:
    data_file = tmp_path / "mongo.bson"
    with standin(data_file) as (url, log), MongoClient[Doc](url) as client:
        client.app.accounts.create_index("email", unique=True)
        client.app.accounts.insert_many(
            [{"_id": i, "email": f"u{i}@example.com"} for i in range(500)]
        )
        client.app.checkpoints.insert_one({"_id": "p0", "position": "7-0"})
    events = [json.loads(line)["event"] for line in log]
    assert events[0] == "mongo stand-in listening"
    assert events[-1] == "mongo stand-in stopped"
    with standin(data_file) as (url, _), MongoClient[Doc](url) as client:
        assert client.app.accounts.count_documents({}) == 500
        assert client.app.checkpoints.find_one({"_id": "p0"}) == {"_id": "p0", "position": "7-0"}
        assert "email_1" in client.app.accounts.index_information()
        with pytest.raises(DuplicateKeyError):
            client.app.accounts.insert_one({"email": "u1@example.com"})


def test_writes_are_saved_soon_even_without_a_clean_stop(tmp_path: Path) -> None:
    data_file = tmp_path / "mongo.bson"
    with standin(data_file, stop=signal.SIGKILL) as (url, _), MongoClient[Doc](url) as client:
        client.app.things.insert_one({"_id": "kept"})
        time.sleep(2.5)
    with standin(data_file) as (url, _), MongoClient[Doc](url) as client:
        assert client.app.things.find_one({"_id": "kept"}) == {"_id": "kept"}


def test_without_a_data_file_nothing_is_written(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "eventhunting.standins.mongo", "--port", str(port)],
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        with MongoClient[Doc](f"mongodb://127.0.0.1:{port}/?directConnection=true") as client:
            client.app.things.insert_one({"_id": 1})
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
    assert list(tmp_path.iterdir()) == []
