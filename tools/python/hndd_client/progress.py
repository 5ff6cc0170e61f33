"""A progress line on stderr for long builds: count, percentage, rate and time left.

On a terminal the line is redrawn in place at most every ``INTERVAL`` seconds; in a log file
(not a terminal) a line is written every ``LOG_INTERVAL`` seconds instead, so logs stay short.
"""
from __future__ import annotations

import sys
import time

INTERVAL = 0.5
LOG_INTERVAL = 15.0


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total: int, label: str, unit: str = "images", stream=None):
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = self._shown = time.monotonic()
        self._live = hasattr(self.stream, "isatty") and self.stream.isatty()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        left_text = _clock(left) if left != float("inf") else "?"
        return (f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({100 * self.done / max(self.total, 1):.0f} %), "
                f"{rate:.1f}/s, {_clock(elapsed)} elapsed, {left_text} left")

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._shown >= (INTERVAL if self._live else LOG_INTERVAL):
            self._shown = now
            self._show(now)

    def _show(self, now: float) -> None:
        end = "\r" if self._live else "\n"
        print(self.line(now).ljust(79 if self._live else 0), end=end, file=self.stream, flush=True)

    def finish(self) -> float:
        """Writes the final line; returns the elapsed seconds."""
        now = time.monotonic()
        print(self.line(now).ljust(79 if self._live else 0), file=self.stream, flush=True)
        return now - self.started
