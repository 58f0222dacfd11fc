"""The order, payment, mail and scale benchmarks still run, each in its smoke mode, as in CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system


@pytest.mark.parametrize(
    "command",
    [
        ["benchmarks.reserve", "--smoke", "--client", "python"],
        ["benchmarks.flash_sale", "--smoke"],
        # Orders of many events: the benchmark's --events path (one event is its default).
        ["benchmarks.ipn", "--smoke", "--client", "python", "--events", "50"],
        ["benchmarks.mail_pipeline", "--smoke"],
        ["benchmarks.scale", "--smoke"],
    ],
    ids=["reserve", "flash_sale", "ipn", "mail_pipeline", "scale"],
)
def test_benchmark_smoke_run_succeeds(
    repository_root: Path, tmp_path: Path, command: list[str]
) -> None:
    report = tmp_path / "report.json"
    finished = subprocess.run(
        [sys.executable, "-m", *command, "--json", str(report)],
        cwd=repository_root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert report.stat().st_size > 0
