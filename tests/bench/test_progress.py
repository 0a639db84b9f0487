"""Progress: a bar redrawn in place on a terminal, a few plain lines elsewhere."""

from __future__ import annotations

import io

from dispatcher.bench.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_it_prints_plain_throttled_lines() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, tty=False, interval_s=5.0, clock=clock)
    with progress.task("fanout", 1000) as task:
        for i in range(1, 81):  # 80 updates over 10 s: a line at 0 s, 5 s and 10 s, then the end
            clock.now += 0.125
            task.update(i * 12)
        task.update(1000)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == [
        "  fanout: 0/1,000 (0%) 0.0s ...",
        "  fanout: 480/1,000 (48%) 5.0s ...",
        "  fanout: 960/1,000 (96%) 10.0s ...",
        "  fanout: 1,000/1,000 (100%) 10.0s done",
    ]


def test_on_a_terminal_it_redraws_one_line() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, tty=True, clock=clock)
    with progress.task("latency", 400) as task:
        for done in (100, 200, 300, 400):
            clock.now += 1
            task.update(done)
    text = out.getvalue()
    assert text.count("\r") == 6 and text.count("\n") == 1 and text.endswith("\n")
    assert "[" + "#" * 15 + " " * 15 + "]" in text
    assert text.rstrip("\n").endswith("400/400    4.0s")


def test_the_default_follows_the_stream() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert Progress(Tty()).tty and not Progress(io.StringIO()).tty
