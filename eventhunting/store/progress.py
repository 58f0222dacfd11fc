"""A plain textual progress bar on stderr for long maintenance commands."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Redraws `label [#####.....] 50% 500/1000 (1234/s)` at most ten times a second."""

    def __init__(
        self, label: str, total: int, *, stream: TextIO | None = None, width: int = 30
    ) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.started = time.monotonic()
        self.drawn_at = 0.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.drawn_at >= 0.1:
            self.drawn_at = now
            self.draw()

    def draw(self) -> None:
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * self.width)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {fraction:4.0%} {self.done}/{self.total}"
            f" ({self.done / elapsed:,.0f}/s)"
        )
        self.stream.flush()

    def finish(self) -> None:
        self.draw()
        self.stream.write("\n")
        self.stream.flush()
