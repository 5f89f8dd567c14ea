"""``garvideo eval``: run VideoRefer-Bench-Q (``eval videorefer-q``) and score predictions (``eval score``).

Shards of ``eval videorefer-q`` are joined with ``garvideo merge`` (:mod:`garvideo.cli.merge`, shared with
``garvideo batch``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

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
    ShardOpt,
    SkipFailedOpt,
    TrackerOpt,
)
from garvideo.cli._runs import exit_for_failures, print_scores, resumable_run, run_pipeline
from garvideo.eval.scoring import score_file
from garvideo.eval.videorefer_q import plan_run, run_settings, run_videorefer_q
from garvideo.runs.engine import DEFAULT_PREFETCH
from garvideo.runs.outputs import check_output

eval_app = typer.Typer(
    name="eval",
    help="Benchmarks: run VideoRefer-Bench-Q and score predictions exactly as the official script.",
    no_args_is_help=True,
)


def _split_types(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [t.strip() for v in values for t in v.split(",") if t.strip()]
    return out or None


@eval_app.command("videorefer-q")
def videorefer_q(
    data: Annotated[Path, typer.Option("--data", help="VideoRefer-Bench-Q.json (the official layout).")],
    video_root: Annotated[
        Path, typer.Option("--video-root", help="Folder the records' 'video' paths are under.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Predictions JSONL (resumed when it exists).")],
    mode: Annotated[
        str,
        typer.Option(
            "--mode", help="single: mask at frame_idx, tracked (standard); multi: all annotated masks."
        ),
    ] = "single",
    tracker: TrackerOpt = "auto",
    flow_option: FlowOpt = None,
    num_frames: KOpt = 8,
    model: ModelOpt = None,
    keyframes: KeyframesOpt = "uniform",
    roi_mode: RoiOpt = "official",
    max_new_tokens: NewTokOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="Only the first N records.")] = None,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--types", help="Only these question types (repeat or comma-separate), e.g. 'Basic Questions'."
        ),
    ] = None,
    shard: ShardOpt = None,
    prefetch: PrefetchOpt = DEFAULT_PREFETCH,
    batch_size: BatchSizeOpt = 1,
    skip_failed: SkipFailedOpt = False,
    overwrite: OverwriteOpt = False,
    retry_errors: RetryErrorsOpt = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the scores as JSON instead of a table.")
    ] = False,
) -> None:
    """Measure zero-shot accuracy on VideoRefer-Bench-Q, scored as the official script does.

    Writes one prediction line per question (official keys video, Answer, pred, type, plus id, mode,
    frames, error, notes, timings) as produced, and the run's settings in <stem>.settings.json. A rerun
    with the same settings resumes (retrying records that failed, unless --skip-failed); one with other
    settings is refused (use a new --out, or --overwrite for a fresh run). At the end prints the table
    and writes it next to the predictions (<stem>.scores.json and .scores.md) with the settings the
    predictions were made with. --prefetch N
    prepares the next N clips in the background while the model runs; --batch-size B answers B
    questions at a time (same predictions). Shard with --shard I/N or torchrun (a clip's questions
    stay on one rank), then `garvideo merge PREDICTIONS`.

    Example: garvideo eval videorefer-q --data VideoRefer-Bench-Q.json --video-root videos --out preds.jsonl --mode single --num-frames 8
    """
    kinds = _split_types(types)
    plan_run(data, video_root, mode=mode, limit=limit, types=kinds, shard=shard)  # fail before any model work
    check_output(out, shard)
    check_model_options(tracker, device, dtype)
    gv = run_pipeline(
        model, tracker, flow_option, num_frames, keyframes, roi_mode, max_new_tokens, device, dtype
    )
    settings = run_settings(gv, mode=mode, data=data)
    check_rerun(out, settings, shard=shard, overwrite=overwrite)  # before the model loads
    gv.load()
    with (
        worded_settings_errors(),
        resumable_run(f"VideoRefer-Bench-Q ({mode})", enabled=not as_json) as update,
    ):
        result = run_videorefer_q(
            data,
            video_root,
            out,
            gv,
            mode=mode,
            limit=limit,
            types=kinds,
            shard=shard,
            skip_failed=skip_failed,
            progress=update,
            settings=settings,
            prefetch=prefetch,
            batch_size=batch_size,
            overwrite=overwrite,
        )
    scores = result.merged_scores or result.scores
    if not as_json and gv.tracker_reason is not None:
        typer.echo(f"tracker: {gv.tracker_reason}", err=True)
    if as_json:
        typer.echo(json.dumps(scores.to_dict()))
    else:
        print_scores(scores, title=f"VideoRefer-Bench-Q: {result.summary.merged or result.summary.out}")
        typer.echo(f"scores written to {result.scores_files[0]} and {result.scores_files[1]}")
        if not result.summary.complete:
            typer.echo(
                "the run is incomplete: rerunning the same command answers the missing records and keeps the rest"
            )
    exit_for_failures(result.summary, "records")


@eval_app.command("score")
def score(
    predictions: Annotated[Path, typer.Argument(help="A predictions JSONL (Answer, pred, type per line).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Score a predictions file with the official VideoRefer-Bench-Q rules, plus a strict parser.

    --json prints {"overall": {correct, total, accuracy}, "per_type": {...}, "empty_predictions",
    "unparsed", "failed", "strict": {"overall", "per_type"}, "settings"?}; accuracies are fractions
    in [0, 1]; "settings" are those recorded beside the predictions (<stem>.settings.json) by the run
    that made them; a file made elsewhere has none and is marked "settings_recorded": false.

    Example: garvideo eval score preds.jsonl --json
    """
    scores = score_file(predictions)
    if as_json:
        typer.echo(json.dumps(scores.to_dict()))
        return
    print_scores(scores, title=f"VideoRefer-Bench-Q: {predictions}")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
