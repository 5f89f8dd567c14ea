"""What the run commands share (``garvideo batch``, ``garvideo eval videorefer-q``, ``garvideo merge``): the
pipeline of a run, the progress bar with its Ctrl-C line, the exit code for failed items, the score table.

Kept light at import (``garvideo --help``): the pipeline (torch) is imported when a command runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import typer

from garvideo.cli._options import garvideo_options
from garvideo.cli._progress import progress_bar
from garvideo.errors import InputError
from garvideo.eval.scoring import Scores, settings_line
from garvideo.options import build_garvideo
from garvideo.runs.loop import Progress, RunInterrupted, RunSummary

if TYPE_CHECKING:  # imports torch
    from garvideo.pipeline import GarVideo

__all__ = ["exit_for_failures", "print_scores", "resumable_run", "run_pipeline"]


def run_pipeline(
    model: str | None,
    tracker: str,
    flow_option: Sequence[str] | None,
    num_frames: int,
    keyframes: str,
    roi_mode: str,
    max_new_tokens: int | None,
    device: str | None,
    dtype: str | None,
) -> GarVideo:
    """The :class:`~garvideo.pipeline.GarVideo` of a batch or eval run, from the command's options
    (:class:`~garvideo.options.GarVideoOptions` and :func:`~garvideo.options.build_garvideo`; under torchrun
    each rank takes ``cuda:$LOCAL_RANK``). Nothing is loaded yet.

    Raises:
        InputError: a bad setting or flow option (naming its field).
    """
    options = garvideo_options(
        model=model,
        tracker=tracker,
        flow_option=flow_option,
        num_frames=num_frames,
        keyframes=keyframes,
        roi_mode=roi_mode,
        device=device,
        dtype=dtype,
        max_new_tokens=max_new_tokens,  # None: the default length
    )
    return build_garvideo(options)


@contextlib.contextmanager
def resumable_run(description: str, enabled: bool = True) -> Iterator[Callable[[Progress], None] | None]:
    """Run a resumable JSONL job (batch QA, eval) under a progress bar; yields its ``progress`` callback.

    An interrupted run (:class:`garvideo.runs.loop.RunInterrupted`) prints how far it got and exits 130.
    """
    try:
        # transient: an error ends the run with its one line only (the summary line follows a success)
        with progress_bar(description, enabled=enabled, transient=True, show_failed=True) as bar:
            yield None if bar is None else bar.report
    except RunInterrupted as exc:
        s = exc.summary
        have = s.skipped + s.written
        typer.echo(
            f"interrupted: {have} of {s.total} answered in {s.out}; rerunning the same command keeps them "
            f"and answers the other {s.total - have}",
            err=True,
        )
        raise typer.Exit(130) from None


def exit_for_failures(summary: RunSummary, what: str) -> None:
    """End a batch / eval run with its exit code: 0 when no item failed, 3 when some did (counts on
    stderr), 2 when every item of the run failed (the input is at fault, not one item).

    Raises:
        InputError: every item failed (exit 2).
        typer.Exit: some failed (exit 3).
    """
    failed, total = summary.failed_total, summary.total
    if summary.merge_problem:
        typer.echo(f"all shards finished but not merged: {summary.merge_problem}", err=True)
    if not failed:
        return
    rerun = (
        "they were kept (--skip-failed); rerunning without --skip-failed retries them"
        if summary.kept_failed
        else "rerunning the same command retries them and keeps the rest"
    )
    if failed >= total:
        raise InputError(
            summary.out, f"all {total} {what} failed (each line's 'error' says why); fix the cause: {rerun}"
        )
    typer.echo(f"{failed} of {total} {what} failed (see their 'error' in {summary.out}); {rerun}", err=True)
    raise typer.Exit(3)


def print_scores(scores: Scores, title: str = "VideoRefer-Bench-Q") -> None:
    """Print a score table (per type: correct / total / accuracy, strict accuracy; overall) with rich."""
    from rich.console import Console  # rich's tables only when scores are printed (`garvideo --help`)
    from rich.table import Table

    if scores.partial:
        title = f"{title} (PARTIAL: {scores.missing} questions have no prediction)"
    table = Table(title=title)
    for col in ("type", "correct", "total", "accuracy (%)", "strict (%)"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for name, off, strict in scores.rows():
        style = "bold" if name == "Overall" else None
        table.add_row(
            name,
            str(off.correct),
            str(off.total),
            f"{100 * off.accuracy:.1f}",
            f"{100 * strict.accuracy:.1f}",
            style=style,
        )
    console = Console()
    console.print(settings_line(scores), markup=False)
    console.print(table)
    console.print(
        f"empty predictions: {scores.empty_predictions} (the official script stops on these), "
        f"unparsed: {scores.unparsed}, failed records: {scores.failed}; all counted wrong"
    )
