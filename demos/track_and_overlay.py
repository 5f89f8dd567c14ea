"""Demo: propagate object masks through a clip and write an overlay video.

On the synthetic sample clip (the default) it also scores the tracks against the clip's ground
truth (DAVIS J, the mask IoU), which shows what the tracker gets right: the disc passing behind the
post, the square leaving the frame.

    python -m garvideo.demos.track_and_overlay                              # sample clip, tracker auto
    python -m garvideo.demos.track_and_overlay --tracker static             # the baseline
    python -m garvideo.demos.track_and_overlay --video my.mp4 --mask dog.png --frame 10 --out out/dog

Only library calls: :func:`garvideo.trackers.build_tracker` tracks, :func:`garvideo.overlay.render_overlay`
draws, :func:`garvideo.eval.vos.jaccard` scores.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from garvideo.demos._common import (
    add_overlay_arg,
    demo_parser,
    error_line,
    overlay_path,
    parse_demo_args,
    resolve_input,
)
from garvideo.errors import InputError, PathLike
from garvideo.eval.vos import evaluate_sequence
from garvideo.overlay import render_overlay
from garvideo.trackers import Prompt, build_tracker
from garvideo.video import open_video

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackDemoResult:
    """What :func:`track_and_overlay` produced.

    Attributes:
        overlay: the overlay video written.
        tracker: the backend that tracked (``auto`` resolved).
        num_frames: frames tracked (the whole clip).
        object_ids: the tracked ids (1 for the first mask, ...).
        visible_frames: per object id, on how many frames it is visible.
        mean_iou: per object id, the mean IoU with the ground truth over frames 1.. (DAVIS J,
            prompt frame excluded); ``None`` without ground truth.
        track: the full :class:`garvideo.trackers.TrackResult`.
    """

    overlay: Path
    tracker: str
    num_frames: int
    object_ids: list
    visible_frames: dict[int, int]
    mean_iou: dict[int, float] | None
    track: Any


def track_and_overlay(
    video: PathLike,
    masks: Sequence[np.ndarray],
    overlay: PathLike,
    *,
    frame: int = 0,
    tracker: str = "auto",
    sam2_checkpoint: str | None = None,
    ground_truth: np.ndarray | None = None,
) -> TrackDemoResult:
    """Track ``masks`` (given on ``frame``) through ``video`` and write the overlay to ``overlay``.

    Args:
        video: clip file or frame folder.
        masks: one ``(H, W)`` bool mask per object.
        overlay: the video to write (``.mp4``).
        frame: the frame the masks are on.
        tracker: ``auto`` / ``sam2`` / ``flow`` / ``static``.
        sam2_checkpoint: for ``sam2`` (and ``auto``).
        ground_truth: optional ``(T, N, H, W)`` bool masks to score the tracks against.

    Raises:
        InputError: no mask, bad files, a ground truth of another shape.
    """
    if not masks:
        raise InputError("masks", "give at least one object mask")
    options = {"sam2_checkpoint": sam2_checkpoint} if sam2_checkpoint else {}
    trk = build_tracker(tracker, **options)
    with open_video(video) as vid:
        prompts = [Prompt(obj_id=k, frame=frame, mask=m) for k, m in enumerate(masks, start=1)]
        result = trk.track(vid, prompts)
        path = render_overlay(vid, result, overlay)
        n = vid.num_frames
    ids = list(result.object_ids)
    mean_iou = None
    if ground_truth is not None:
        gt = np.asarray(ground_truth, dtype=bool)
        if gt.shape[:2] != (n, len(ids)):
            raise InputError(
                "ground_truth", f"shape {gt.shape} does not match {n} frames x {len(ids)} objects"
            )
        mean_iou = {
            oid: evaluate_sequence(list(gt[:, k]), [result.mask(t, oid) for t in range(n)]).j
            for k, oid in enumerate(ids)
        }
    return TrackDemoResult(
        overlay=Path(path),
        tracker=result.tracker,
        num_frames=len(result.frames),
        object_ids=ids,
        visible_frames={oid: len(result.visible_frames(oid)) for oid in ids},
        mean_iou=mean_iou,
        track=result,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = demo_parser(
        "python -m garvideo.demos.track_and_overlay",
        "Track objects through a clip and write an overlay video (masks tinted, outlined, numbered).",
        "Example: python -m garvideo.demos.track_and_overlay --video my.mp4 --mask dog.png --out out/dog",
        model=False,
    )
    add_overlay_arg(parser, "overlay.mp4")
    args = parse_demo_args(parser, argv)
    try:
        inp = resolve_input(args)
        res = track_and_overlay(
            inp.video,
            inp.masks,
            overlay_path(args),
            frame=inp.frame,
            tracker=args.tracker,
            sam2_checkpoint=args.sam2_checkpoint,
            ground_truth=None if inp.sample is None else inp.sample.gt_all(),
        )
    except InputError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    print(f"tracked {len(res.object_ids)} object(s) over {res.num_frames} frames with {res.tracker}")
    for oid in res.object_ids:
        line = f"  object {oid}: visible on {res.visible_frames[oid]} frames"
        if res.mean_iou is not None:
            line += f", mean IoU with the ground truth {res.mean_iou[oid]:.3f}"
        print(line)
    print(f"overlay: {res.overlay}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
