"""Progress of long maintenance commands: a rich bar on a terminal, JSON log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from eventhunting.structured_logging import JsonFormatter

REDRAW_SECONDS = 0.1
"""How often the count is handed to the bar (a call per event would cost more than the event)."""
LOG_EVERY_SECONDS = 10.0
"""How often a line is logged when the output is not a terminal."""

logger = logging.getLogger("eventhunting.progress")


class RateColumn(ProgressColumn):
    """`12,345 events/s`, as rich measures it over its recent samples."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("? events/s" if speed is None else f"{speed:,.0f} events/s")


class ProgressBar:
    """Counts done items of a known total and shows how fast and how long is left.

    On a terminal: a live bar with done/total, percentage, events/s, elapsed and time left.
    Elsewhere (a pipe, a log collector, a test's StringIO): one JSON line every
    LOG_EVERY_SECONDS and one at the end, with `done`, `total`, `events_per_second` and
    `seconds_left`, in the format of every other log line.
    """

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.handed_over = 0
        self.handed_at = self.started
        self.logged_at = self.started
        self.bar: Progress | None = None
        if self.stream.isatty():
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                RateColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self.task = self.bar.add_task(label, total=self.total)
            self.bar.start()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.handed_at < REDRAW_SECONDS:
            return
        self.handed_at = now
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
        elif now - self.logged_at >= LOG_EVERY_SECONDS:
            self.logged_at = now
            self.log("progress")

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
            self.bar.stop()
        else:
            self.log("done")

    def log(self, state: str) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0)
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            __file__,
            0,
            f"{self.label} {state}",
            (),
            None,
            extra={
                "done": self.done,
                "total": self.total,
                "events_per_second": round(rate, 1),
                "seconds_left": round(left / rate, 1) if rate > 0 else None,
            },
        )
        self.stream.write(JsonFormatter().format(record) + "\n")
        self.stream.flush()
