"""``garvideo batch`` (batch video QA over a JSONL file) and ``garvideo merge`` (join shard outputs)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from garvideo.batch import DEFAULT_PREFETCH
from garvideo.cli._options import (
    BatchSizeOpt,
    DeviceOpt,
    DtypeOpt,
    FlowOpt,
    KeyframesOpt,
    KOpt,
    ModelOpt,
    NewTokOpt,
    OverwriteOpt,
    PrefetchOpt,
    RetryErrorsOpt,
    RoiOpt,
    Sam3Opt,
    ShardOpt,
    SkipFailedOpt,
    TextThresholdOpt,
    TrackerOpt,
)
from garvideo.cli._progress import progress_bar


@contextlib.contextmanager
def resumable_run(description: str, enabled: bool = True) -> Iterator[Callable[[Any], None] | None]:
    """Run a resumable JSONL job (batch QA, eval) under a progress bar; yields its ``progress`` callback.

    An interrupted run (:class:`garvideo.jsonl.RunInterrupted`) prints how far it got and exits 130.
    """
    from garvideo.jsonl import RunInterrupted

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


def exit_for_failures(summary: Any, what: str) -> None:
    """End a batch / eval run with its exit code: 0 when no item failed, 3 when some did (counts on
    stderr), 2 when every item of the run failed (the input is at fault, not one item)."""
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
        from garvideo.errors import InputError

        raise InputError(
            summary.out, f"all {total} {what} failed (each line's 'error' says why); fix the cause: {rerun}"
        )
    typer.echo(f"{failed} of {total} {what} failed (see their 'error' in {summary.out}); {rerun}", err=True)
    raise typer.Exit(3)


def batch(
    questions: Annotated[
        Path,
        typer.Argument(help="Questions JSONL: one {id, video, mask|masks, question, options?} per line."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Answers JSONL (resumed when it exists).")],
    model: ModelOpt = None,
    tracker: TrackerOpt = "auto",
    flow_option: FlowOpt = None,
    num_frames: KOpt = 8,
    keyframes: KeyframesOpt = "uniform",
    roi_mode: RoiOpt = "official",
    max_new_tokens: NewTokOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    root: Annotated[
        Path | None,
        typer.Option("--root", help="Resolve relative paths here (default: the questions file's folder)."),
    ] = None,
    shard: ShardOpt = None,
    prefetch: PrefetchOpt = DEFAULT_PREFETCH,
    batch_size: BatchSizeOpt = 1,
    skip_failed: SkipFailedOpt = False,
    overwrite: OverwriteOpt = False,
    retry_errors: RetryErrorsOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
    text_threshold: TextThresholdOpt = 0.5,
    sam3_checkpoint: Sam3Opt = None,
) -> None:
    """Answer a JSONL file of region questions, one answer line per question, written as produced.

    Each line: {"id", "video", "mask" (path or list of paths) and/or "text" (a name or a list of names, SAM 3's
    detector, "text_pick" to choose a candidate) with "frame" (default 0), or "masks"
    (per object, {frame: mask path or COCO RLE}), "question" (objects as <object0>, ...), "options"?}.
    The run's settings (model, tracker, K, ...) are recorded in ANSWERS' .settings.json: a rerun with
    the same ones resumes (keeps the answers, retries the questions that failed unless --skip-failed),
    one with other settings is refused (use a new --out, or --overwrite for a fresh run). A bad
    question is recorded with its error and the run goes on;
    questions on the same clip and masks share tracking, frame encoding and the prompt prefix.
    --prefetch N prepares the next N clips in the background while the model runs; --batch-size B
    answers B questions at a time; the answers are the same either way. Shard with --shard I/N or
    torchrun (a clip's questions stay on one rank), then join the parts with `garvideo merge ANSWERS`.

    Example: garvideo batch questions.jsonl --out answers.jsonl --tracker flow --num-frames 8 --batch-size 4
    """
    from garvideo.batch import RunnerStats, make_pipeline, plan_batch, run_batch
    from garvideo.run_settings import build_run_settings, text_settings

    qs = plan_batch(questions, out, root=root, shard=shard)  # bad input fails before the model loads
    from garvideo.cli._checks import check_model_options, check_rerun, worded_settings_errors
    from garvideo.trackers import parse_flow_options

    check_model_options(tracker, device, dtype)
    gv = make_pipeline(
        model,
        tracker,
        num_frames,
        keyframes=keyframes,
        roi_mode=roi_mode,
        max_new_tokens=max_new_tokens,
        device=device,
        dtype=dtype,
        tracker_options=parse_flow_options(flow_option or []),
    )
    text_detector = None
    if any(q.texts for q in qs):  # questions with "text": SAM 3's concept detector on their frame
        from garvideo.trackers.text import TextDetector

        text_detector = TextDetector(sam3_checkpoint, device=device, threshold=text_threshold)
    settings = build_run_settings(gv, **text_settings(text_detector))
    check_rerun(out, settings, shard=shard, overwrite=overwrite)  # before the model loads
    stats = RunnerStats()
    with worded_settings_errors(), resumable_run("batch QA", enabled=not as_json) as update:
        summary = run_batch(
            qs,
            out,
            gv,
            shard=shard,
            skip_failed=skip_failed,
            progress=update,
            prefetch=prefetch,
            batch_size=batch_size,
            stats=stats,
            settings=settings,
            overwrite=overwrite,
            text_detector=text_detector,
        )
    _print_summary(summary, as_json, gv, stats)
    exit_for_failures(summary, "questions")


def _print_summary(summary: Any, as_json: bool, gv: Any = None, stats: Any = None) -> None:
    reason = getattr(gv, "tracker_reason", None)
    info: dict[str, Any] = {
        "out": str(summary.out),
        "total": summary.total,
        "skipped": summary.skipped,
        "written": summary.written,
        "retried": summary.retried,
        "kept_failed": summary.kept_failed,
        "failed": summary.failed_total,
        "answered": summary.skipped + summary.written - summary.failed_total,
        "complete": summary.complete,
        "merged": str(summary.merged) if summary.merged else None,
        "seconds": round(summary.seconds, 3),
        "tracker": None if reason is None else gv.tracker_name,
        "tracker_reason": reason,
        "dtype": None if gv is None else gv.model_dtype,
    }
    if stats is not None and summary.seconds > 0:
        info["model_busy"] = round(stats.model_s / summary.seconds, 3)  # share of wall time in the model
    if as_json:
        typer.echo(json.dumps(info))
        return
    if reason is not None:
        typer.echo(f"tracker: {reason}", err=True)
    retried = f"{summary.retried} of them retried after failing before, " if summary.retried else ""
    kept = f", {summary.kept_failed} failed kept (--skip-failed)" if summary.kept_failed else ""
    typer.echo(
        f"{summary.out}: {summary.skipped + summary.written}/{summary.total} answered "
        f"({summary.skipped} already there{kept}, {summary.written} new, {retried}"
        f"{summary.failed_total} with errors) "
        f"in {summary.seconds:.1f} s"
        + (f", model busy {100 * info['model_busy']:.0f}% of it" if "model_busy" in info else "")
        + (f" ({info['dtype']})" if info["dtype"] else "")
    )
    if summary.merged:
        typer.echo(f"all shards finished: merged into {summary.merged}")


def merge(
    out: Annotated[
        Path, typer.Argument(help="The --out the shards were given; parts OUT.part-I-of-N.jsonl are read.")
    ],
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="Merge parts that lack records (a rank cut short); the scores are marked partial.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Join the parts of a sharded `garvideo batch` or `garvideo eval videorefer-q` run into OUT.

    Gives the same file a single run writes (input order). For benchmark predictions the merged file
    is scored too (OUT's .scores.json and .scores.md).

    Example: garvideo merge answers.jsonl
    """
    from garvideo.eval.videorefer_q import merge_outputs

    result, scores = merge_outputs(out, allow_partial=allow_partial)
    if as_json:
        payload: dict[str, Any] = {
            "out": str(result.out),
            "parts": [str(p) for p in result.parts],
            "records": result.records,
            "missing": result.missing,
        }
        if scores is not None:
            payload["scores"] = scores.to_dict()
        typer.echo(json.dumps(payload))
        return
    typer.echo(f"merged {len(result.parts)} parts ({result.records} records) into {result.out}")
    if result.partial:
        typer.echo(
            f"partial: {result.missing} records missing ("
            + ", ".join(f"{p.name} lacks {n}" for p, n in result.incomplete.items())
            + ")",
            err=True,
        )
    if scores is not None:
        from garvideo.cli.evaluate import print_scores

        print_scores(scores)


def register(app: typer.Typer) -> None:
    app.command("batch")(batch)
    app.command("merge")(merge)
