"""Progress while a suite runs: rich bars on a terminal, plain lines in a pipe, a log file or CI.

:func:`make_reporter` picks one: :class:`RichReporter` when stderr is a terminal (one
bar per run, with epoch, live loss and what evaluation is doing), :class:`PlainReporter`
otherwise (one line per run event, epochs at most every ``interval`` seconds, with
loss, images/s and an ETA), and :class:`~vaebench.execution.training.SilentReporter`
for ``--quiet``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vaebench.execution.training import SilentReporter


def make_reporter(quiet: bool = False, stream: TextIO | None = None):
    stream = stream or sys.stderr
    if quiet:
        return SilentReporter()
    if stream.isatty():
        return RichReporter(Console(file=stream))
    return PlainReporter(stream)


class RichReporter:
    """A :class:`vaebench.execution.training.Reporter` that draws rich progress bars on stderr."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs  loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stage]}"),
            console=self.console,
            refresh_per_second=2,  # bars move once per epoch; a faster redraw thread takes CPU from training
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def start(self, run: str, epochs: int | None) -> None:
        self.tasks[run] = self.progress.add_task(escape(run), total=epochs, loss="-", stage="training")

    def start_evaluation(self, run: str) -> None:
        self.tasks[run] = self.progress.add_task(escape(run), total=None, loss="-", stage="evaluating")

    def epoch(self, run: str, record: dict) -> None:
        self.progress.update(self.tasks[run], completed=record["epoch"] + 1, loss=f"{record.get('loss', float('nan')):.3f}")

    def stage(self, run: str, text: str) -> None:
        """What the run is doing after training, e.g. the metric being computed."""
        if run in self.tasks:
            self.progress.update(self.tasks[run], stage=escape(text))

    def finish(self, run: str, status: str) -> None:
        task = self.tasks.get(run)
        if task is not None:
            # escaped: rich would read a bare "[ok]" as a markup tag and print nothing
            self.progress.update(task, description=escape(f"{run} [{status}]"), stage="")


class PlainReporter:
    """Plain progress lines for a pipe, a log file or CI: no bars, no control codes."""

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0):
        self.stream = stream or sys.stderr
        self.interval = interval
        self.started: dict[str, float] = {}
        self.epochs: dict[str, int | None] = {}
        self.last: dict[str, float] = {}
        self.resumed_at: dict[str, int] = {}  # epochs a resumed run had before this process

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.flush()

    def _say(self, text: str) -> None:
        print(f"vaebench: {text}", file=self.stream, flush=True)

    def start(self, run: str, epochs: int | None) -> None:
        self.started[run], self.epochs[run], self.last[run] = time.monotonic(), epochs, 0.0
        self._say(f"{run}: training" + (f" for {epochs} epochs" if epochs else ""))

    def start_evaluation(self, run: str) -> None:
        self.started[run], self.epochs[run], self.last[run] = time.monotonic(), None, 0.0
        self._say(f"{run}: evaluating the saved model")

    def epoch(self, run: str, record: dict) -> None:
        now = time.monotonic()
        total = self.epochs.get(run)
        done = record["epoch"] + 1
        if record.get("resumed"):
            self.started[run], self.resumed_at[run] = now, done  # the ETA times this process's epochs only
        last_epoch = total is not None and done >= total
        if now - self.last.get(run, 0.0) < self.interval and not last_epoch and done > 1:
            return
        self.last[run] = now
        elapsed = now - self.started.get(run, now)
        live = done - self.resumed_at.get(run, 0)
        eta = f", ETA {elapsed / live * (total - done):.0f} s" if total and done < total and live > 0 else ""
        rate = record.get("train_images_per_s", float("nan"))
        self._say(f"{run}: epoch {done}{f'/{total}' if total else ''} loss {record.get('loss', float('nan')):.3f}, {rate:,.0f} images/s{eta}")

    def stage(self, run: str, text: str) -> None:
        now = time.monotonic()
        if text.startswith("evaluating ") or now - self.last.get(run, 0.0) >= self.interval:
            self.last[run] = now
            self._say(f"{run}: {text}")

    def finish(self, run: str, status: str) -> None:
        elapsed = time.monotonic() - self.started.get(run, time.monotonic())
        self._say(f"{run}: {status} after {elapsed:.0f} s")
