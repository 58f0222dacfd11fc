"""Progress of replay and restore: a live bar on a terminal, JSON log lines elsewhere."""

from __future__ import annotations

import io
import json

import pytest

from eventhunting.store import progress
from eventhunting.store.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_it_logs_json_lines_with_rate_and_time_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(progress, "REDRAW_SECONDS", 0.0)
    output = io.StringIO()
    bar = ProgressBar("replay", 1_000, stream=output)
    for _ in range(10):
        bar.advance(50)
    bar.finish()
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    assert lines[-1]["event"] == "replay done"
    assert lines[-1]["done"] == 500
    assert lines[-1]["total"] == 1_000
    assert lines[-1]["events_per_second"] > 0
    assert lines[-1]["seconds_left"] >= 0
    assert lines[0]["event"] == "replay progress"
    assert {"time", "level", "logger"} <= set(lines[0])


def test_without_a_terminal_it_logs_only_now_and_then(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "REDRAW_SECONDS", 0.0)
    output = io.StringIO()
    bar = ProgressBar("replay", 100_000, stream=output)
    for _ in range(100_000):
        bar.advance()
    bar.finish()
    assert len(output.getvalue().splitlines()) == 1  # well under LOG_EVERY_SECONDS: the end only


def test_on_a_terminal_it_draws_a_bar_with_events_per_second_and_time_left() -> None:
    output = Terminal()
    bar = ProgressBar("replay", 200, stream=output)
    for _ in range(200):
        bar.advance()
    bar.finish()
    drawn = output.getvalue()
    assert "replay" in drawn
    assert "200/200" in drawn
    assert "events/s" in drawn
    assert "left" in drawn
