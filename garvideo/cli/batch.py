"""``garvideo batch``: batch video QA over a JSONL file of questions (:mod:`garvideo.runs.batch_qa`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from garvideo.cli._checks import check_model_options, check_rerun, worded_settings_errors
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
from garvideo.cli._runs import exit_for_failures, resumable_run, run_pipeline
from garvideo.runs.engine import DEFAULT_PREFETCH, RunnerStats
from garvideo.runs.loop import RunSummary
from garvideo.runs.questions import plan_batch_qa
from garvideo.runs.settings import build_run_settings, text_settings
from garvideo.trackers.text import TextDetector

if TYPE_CHECKING:  # imports torch
    from garvideo.pipeline import GarVideo


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
    qs = plan_batch_qa(questions, out, root=root, shard=shard)  # bad input fails before the model loads
    check_model_options(tracker, device, dtype)
    gv = run_pipeline(
        model, tracker, flow_option, num_frames, keyframes, roi_mode, max_new_tokens, device, dtype
    )
    text_detector = None
    if any(q.texts for q in qs):  # questions with "text": SAM 3's concept detector on their frame
        text_detector = TextDetector(sam3_checkpoint, device=device, threshold=text_threshold)
    settings = build_run_settings(gv, **text_settings(text_detector))
    check_rerun(out, settings, shard=shard, overwrite=overwrite)  # before the model loads
    from garvideo.runs.batch_qa import run_batch_qa  # imports torch (the pipeline)

    gv.load()
    stats = RunnerStats()
    with worded_settings_errors(), resumable_run("batch QA", enabled=not as_json) as update:
        summary = run_batch_qa(
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


def _print_summary(summary: RunSummary, as_json: bool, gv: GarVideo, stats: RunnerStats) -> None:
    reason = gv.tracker_reason
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
        "dtype": gv.model_dtype,
    }
    if summary.seconds > 0:
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


def register(app: typer.Typer) -> None:
    app.command("batch")(batch)
