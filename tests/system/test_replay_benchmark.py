"""The replay benchmark still runs: its few-second smoke mode, as CI runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system


def test_the_replay_benchmark_smoke_run_reports_every_rate(
    repository_root: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.replay", "--smoke", "--json", str(report)],
        cwd=repository_root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    body = json.loads(report.read_text())
    names = {measure["name"] for measure in body["measures"]}
    assert names == {
        "raw XRANGE",
        "sales fold in memory",
        "sales from logs",
        "sales from logs, 2 jobs",
        "all read models from logs",
        "raw archive find",
        "sales from archive",
        "all read models from archive",
    }
    # Every rebuild read every entry of the history, from Redis and from the archive.
    assert {measure["events"] for measure in body["measures"]} == {body["events"]}
    assert all(measure["per_second"] > 0 for measure in body["measures"])
