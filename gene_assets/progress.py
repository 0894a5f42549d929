"""Progress of long steps (embedding, evaluation) in the Dagster log and the terminal: done/total, rate, time left."""

from __future__ import annotations

import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s")
    )


class ProgressLog:
    """Counts units of work towards `total` and logs at most every `every_seconds` (always the last one).

    Where units differ in cost (texts of any length, embedded longest first), `work` measures what each costs
    (characters, which tokens follow) and the time left is the elapsed time scaled by the work left, not the units."""

    def __init__(self, log, label: str, unit: str, total: int = 0, every_seconds: float = 10.0):
        self.log, self.label, self.unit, self.total, self.every_seconds = log, label, unit, total, every_seconds
        self.done, self.reported = 0, -1
        self.work_total, self.work_done = 0, 0
        self.started = self.last_report = time.perf_counter()

    def expect(self, total: int, work: int = 0) -> None:
        """Set the amount of work (once it is known, e.g. after the cache lookup) and restart the clock."""
        self.total, self.done, self.reported = total, 0, -1
        self.work_total, self.work_done = work, 0
        self.started = self.last_report = time.perf_counter()

    def update(self, done: int, note: str = "", work_done: int | None = None) -> None:
        self.done = done
        if work_done is not None:
            self.work_done = work_done
        now = time.perf_counter()
        if done == self.reported or (done < self.total and now - self.last_report < self.every_seconds):
            return
        self.last_report, self.reported = now, done
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.work_total and self.work_done:
            seconds_left = elapsed * max(self.work_total - self.work_done, 0) / self.work_done
        else:
            seconds_left = (self.total - done) / rate if rate else 0.0
        left = f", about {duration(seconds_left)} left" if 0 < done < self.total and rate else ""
        share = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        self.log.info(
            f"{self.label}: {done:,}/{self.total:,} {self.unit}{share} in {duration(elapsed)}, "
            f"{rate:,.1f} {self.unit}/s{left}{f'; {note}' if note else ''}"
        )

    def advance(self, amount: int = 1, note: str = "") -> None:
        self.update(self.done + amount, note)

    def part(self) -> Callable[..., None]:
        """A callback for one part of the work that reports its own done count, and optionally its work done (an
        encoder's batches)."""
        base, work_base = self.done, self.work_done
        return lambda done, _total, work=None: self.update(
            base + done, work_done=None if work is None else work_base + work
        )
