"""How far a benchmark step is: a one-line bar redrawn in place on a terminal, plain lines otherwise.

No dependency: the bar is ``\\r`` and a padded line; off a terminal (CI logs, pipes) a step prints a line
when it starts, at most one every ``interval_s`` while it runs, and one when it ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

BAR_WIDTH = 30


class Task:
    """One step with a known total; ``update(done)`` as it goes."""

    def __init__(self, owner: Progress, label: str, total: int) -> None:
        self.owner = owner
        self.label = label
        self.total = total
        self.done = 0
        self.t0 = owner.clock()
        self.last_shown = float("-inf")
        self.lines = 0

    def update(self, done: int) -> None:
        self.done = done
        now = self.owner.clock()
        if now - self.last_shown >= self.owner.interval_s:
            self.last_shown = now
            self.owner.show(self, final=False)

    def close(self) -> None:
        self.owner.show(self, final=True)


class Progress:
    """Progress of the benchmark's steps on ``stream`` (stderr by default, so stdout keeps the figures)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        # a terminal redraws ten times a second; a log gets a line every 5 s at most
        self.interval_s = interval_s if interval_s is not None else (0.1 if self.tty else 5.0)
        self.clock = clock

    @contextmanager
    def task(self, label: str, total: int) -> Iterator[Task]:
        task = Task(self, label, total)
        task.update(0)
        try:
            yield task
        finally:
            task.close()

    def show(self, task: Task, final: bool) -> None:
        elapsed = self.clock() - task.t0
        frac = min(1.0, task.done / task.total) if task.total else 1.0
        if self.tty:
            bar = "#" * int(frac * BAR_WIDTH)
            text = f"\r  {task.label:<22} [{bar:<{BAR_WIDTH}}] {task.done:>10,}/{task.total:,} {elapsed:6.1f}s"
            self.stream.write(text + ("\n" if final else ""))
        else:
            state = "done" if final else "..."
            self.stream.write(f"  {task.label}: {task.done:,}/{task.total:,} ({frac:.0%}) {elapsed:.1f}s {state}\n")
        task.lines += 1
        self.stream.flush()
