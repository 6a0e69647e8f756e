"""Progress on the terminal: one rich bar per run, with the epoch and the live loss."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RichReporter:
    """A :class:`vaebench.training.Reporter` that draws rich progress bars on stderr."""

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

    def start(self, run: str, epochs: int) -> None:
        self.tasks[run] = self.progress.add_task(escape(run), total=epochs, loss="-", stage="training")

    def epoch(self, run: str, record: dict) -> None:
        self.progress.update(self.tasks[run], completed=record["epoch"] + 1, loss=f"{record.get('loss', float('nan')):.3f}")

    def stage(self, run: str, text: str) -> None:
        """What the run is doing after training, e.g. the metric being computed."""
        self.progress.update(self.tasks[run], stage=escape(text))

    def finish(self, run: str, status: str) -> None:
        task = self.tasks.get(run)
        if task is not None:
            # escaped: rich would read a bare "[ok]" as a markup tag and print nothing
            self.progress.update(task, description=escape(f"{run} [{status}]"), stage="")
