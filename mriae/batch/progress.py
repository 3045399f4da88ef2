"""Progress of a batch job as plain lines, for logs and pipes where no progress bar can be
drawn: one line every N files and one after the last, with the counts so far and an ETA."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mriae.batch.task import Record

COUNTED = ("done", "copied", "skipped", "failed")


class ProgressLines:
    """An ``on_record`` callback of :func:`mriae.batch.run_batch` that calls ``write`` with
    ``progress: 20/135 files (18 done, 0 copied, 1 skipped, 1 failed), 1m02s elapsed, ETA
    5m57s`` after every ``every`` files and after the last. Time counts from :meth:`start`
    (call it when the cluster is up), or from the callback's creation."""

    def __init__(self, write: Callable[[str], None], every: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if every < 1:
            raise ValueError(f"a progress line every {every} files: give 1 or more")
        self.write, self.every, self.clock = write, every, clock
        self.started = clock()
        self.counts: Counter[str] = Counter()

    def start(self) -> None:
        """Count time from now."""
        self.started = self.clock()

    def __call__(self, record: Record, done: int, total: int) -> None:
        self.counts[record.status] += 1
        if done % self.every == 0 or done == total:
            self.write(self.line(done, total))

    def line(self, done: int, total: int) -> str:
        """The progress line after ``done`` of ``total`` files; the ETA assumes the files left
        take as long on average as those done."""
        elapsed = self.clock() - self.started
        counts = ", ".join(f"{self.counts[status]} {status}" for status in COUNTED)
        eta = f", ETA {duration(elapsed * (total - done) / done)}" if 0 < done < total else ""
        return f"progress: {done}/{total} files ({counts}), {duration(elapsed)} elapsed{eta}"


def duration(seconds: float) -> str:
    """``seconds`` as ``45s``, ``3m07s`` or ``2h05m``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
