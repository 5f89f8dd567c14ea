"""The one progress bar of the CLI: rich, on stderr (stdout carries only results), with rate and ETA.

Every long-running command uses :func:`progress_bar`; the bar it yields is fed either by
``progress(done, total)`` callbacks (trackers, :meth:`garvideo.pipeline.GarVideo.prepare`) through
:meth:`ProgressBar.count`, or by :class:`garvideo.runs.loop.Progress` reports (batch QA, eval) through
:meth:`ProgressBar.report`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["ProgressBar", "progress_bar"]


class ProgressBar:
    """One task of a running rich progress bar (made by :func:`progress_bar`)."""

    def __init__(self, bar: Any, task: Any) -> None:
        self._bar = bar
        self._task = task

    def count(self, done: int, total: int | None) -> None:
        """A ``progress(done, total)`` callback: ``done`` of ``total`` items finished."""
        self._bar.update(self._task, completed=done, total=total)

    def report(self, p: Any) -> None:
        """A :func:`garvideo.runs.loop.run_jsonl` progress callback (a :class:`garvideo.runs.loop.Progress`)."""
        if p.last_id is None:  # the first report: already-done items do not count toward the rate
            self._bar.reset(self._task, total=p.total, completed=p.done, failed=p.failed)
        else:
            self._bar.update(self._task, total=p.total, completed=p.done, failed=p.failed)


@contextlib.contextmanager
def progress_bar(
    description: str, *, enabled: bool = True, transient: bool = True, show_failed: bool = False
) -> Iterator[ProgressBar | None]:
    """A rich progress bar on stderr: description, bar, done/total, rate, [failed], elapsed, ETA.

    Args:
        description: the label in front of the bar.
        enabled: ``False`` (e.g. with ``--json``) yields ``None`` and draws nothing; so does a stderr
            that is not a terminal.
        transient: remove the bar when done (``False`` leaves the final state on screen).
        show_failed: add a "failed N" column (fed by :meth:`ProgressBar.report`).
    """
    if not enabled or not sys.stderr.isatty():  # a log file or a pipe gets no bar (and no stray newline)
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class _Rate(ProgressColumn):
        """Items per second (or per minute when slower than one a second) over the recent updates."""

        def render(self, task: Any) -> Text:
            speed = task.speed
            if not speed:
                return Text("-- /s", style="progress.data.speed")
            return Text(
                f"{speed:.2f}/s" if speed >= 1 else f"{speed * 60:.1f}/min", style="progress.data.speed"
            )

    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate()]
    if show_failed:
        columns.append(TextColumn("failed {task.fields[failed]}"))
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, transient=transient, console=Console(stderr=True)) as bar:
        yield ProgressBar(bar, bar.add_task(description, total=None, failed=0))
