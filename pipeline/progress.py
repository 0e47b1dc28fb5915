"""Progress of a build, shown to a person at a terminal (rich) and nowhere else.

The recipe (:mod:`pipeline.build`) reports progress through its runner's ``progress(stage,
done, total)``; a :class:`ProgressDisplay` turns those calls into rich progress bars with rate
and time remaining. When the output is not a terminal (CI, cron, a pipe) nothing is shown:
:func:`for_terminal` then returns None.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: the stages of a build, in order, with what their counts count
STAGES = {"read inputs": "inputs", "allocate": "steps", "write days": "days",
          "write model days": "days", "publish": "steps"}


class ProgressDisplay:
    """Rich progress bars, one per stage, started on the stage's first report."""

    def __init__(self, stream: TextIO | None = None) -> None:
        console = Console(file=stream or sys.stderr)
        self._progress = Progress(
            TextColumn("{task.description:<17}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"), TextColumn("[dim]{task.fields[rate]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, transient=False)
        self._tasks: dict[str, TaskID] = {}
        self._started = False

    def update(self, stage: str, done: int, total: int) -> None:
        """``done`` of ``total`` units of ``stage`` are finished."""
        if not self._started:
            self._progress.start()
            self._started = True
        task = self._tasks.get(stage)
        if task is None:
            task = self._progress.add_task(stage, total=total, unit=STAGES.get(stage, ""),
                                           rate="")
            self._tasks[stage] = task
        elapsed = self._progress.tasks[task].elapsed or 0.0
        rate = f"{done / elapsed:.1f}/s" if elapsed > 0 and done else ""
        self._progress.update(task, completed=done, total=total, rate=rate)

    def close(self) -> None:
        if self._started:
            self._progress.stop()
            self._started = False


def for_terminal(stream: TextIO | None = None) -> ProgressDisplay | None:
    """A display when ``stream`` (standard error) is an interactive terminal, else None."""
    stream = stream or sys.stderr
    return ProgressDisplay(stream) if stream.isatty() else None
