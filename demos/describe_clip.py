"""Demo: describe an object in a clip, with the description burned into the overlay video.

    python -m garvideo.demos.describe_clip --model HaochenWang/GAR-1B          # sample clip, object 1
    python -m garvideo.demos.describe_clip --model /tmp/tiny --tracker flow    # tiny random model
    python -m garvideo.demos.describe_clip --video my.mp4 --mask dog.png --frame 10 --out out/dog

The masks are propagated through the clip (``--tracker``), GAR reads the keyframes with the object's
region replayed on each, and the description streams to the terminal as it is generated; the
overlay video shows the tracks with the text at the bottom. On the sample clip it describes the
first object (the checkered disc); ``--all-objects`` describes every object together.

Only library calls: :class:`garvideo.pipeline.GarVideo` and :func:`garvideo.overlay.render_overlay`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from garvideo.demos._common import (
    add_overlay_arg,
    demo_options,
    demo_parser,
    error_line,
    overlay_path,
    parse_demo_args,
    resolve_input,
    write_stdout,
)
from garvideo.errors import InputError, ModelUnavailableError, PathLike
from garvideo.options import build_garvideo
from garvideo.overlay import render_overlay

if TYPE_CHECKING:
    from garvideo.model.loading import GarBundle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DescribeDemoResult:
    """What :func:`describe_clip` produced.

    Attributes:
        text: the description.
        overlay: the overlay video (tracks and the text).
        frames: the keyframes the model read.
        tracker: the tracker used.
        model: the model name.
        timings: seconds per stage, from the pipeline.
        notes: the pipeline's notes (e.g. fewer keyframes than asked).
    """

    text: str
    overlay: Path
    frames: list[int]
    tracker: str
    model: str
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def describe_clip(
    video: PathLike,
    masks: Sequence[np.ndarray],
    overlay: PathLike,
    *,
    frame: int = 0,
    model: str | os.PathLike[str] | GarBundle | None = None,
    tracker: str = "auto",
    sam2_checkpoint: str | None = None,
    num_frames: int = 8,
    max_new_tokens: int = 256,
    device: str | None = None,
    on_text: Callable[[str], None] | None = None,
) -> DescribeDemoResult:
    """Describe the object(s) ``masks`` (given on ``frame``) and write the captioned overlay.

    Args:
        video: clip file or frame folder.
        masks: one ``(H, W)`` bool mask per object; several objects are described together.
        overlay: the video to write (``.mp4``).
        frame: the frame the masks are on.
        model: GAR hub id, folder or loaded bundle (``None``: ``$GARVIDEO_MODEL``, else GAR-1B).
        tracker, sam2_checkpoint: the mask propagation (as ``garvideo describe``).
        num_frames: keyframes given to the model.
        max_new_tokens: generation length limit.
        device: torch device.
        on_text: called with each new piece of text as it is generated.

    Raises:
        InputError: bad files or options.
        ModelUnavailableError: no weights (offline, nothing on disk).
    """
    gv = build_garvideo(
        demo_options(
            model=model,
            tracker=tracker,
            sam2_checkpoint=sam2_checkpoint,
            num_frames=num_frames,
            max_new_tokens=max_new_tokens,
            device=device,
        )
    )
    # Track first (no weights needed) and draw the tracks, so that the overlay exists even when the
    # model cannot be loaded; then load, describe, and redraw with the text burned in.
    clip = gv.prepare(video, masks=list(masks), frame=frame, encode=False, track_all_frames=True)
    try:
        path = render_overlay(clip.video, clip.masks_by_frame(), overlay)
        try:
            gv.load()
        except ModelUnavailableError as missing:
            raise ModelUnavailableError(
                f"{missing} (the overlay with the tracks is written: {path})"
            ) from None
        result = gv.describe(clip, stream=on_text)
        path = render_overlay(clip.video, clip.masks_by_frame(), overlay, caption=result.text)
    finally:
        clip.close()
    return DescribeDemoResult(
        text=result.text,
        overlay=Path(path),
        frames=list(result.frames),
        tracker=result.tracker,
        model=result.model,
        timings=dict(result.timings),
        notes=list(result.notes),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = demo_parser(
        "python -m garvideo.demos.describe_clip",
        "Describe an object in a clip; write an overlay video with the description burned in.",
        "Example: python -m garvideo.demos.describe_clip --video my.mp4 --mask dog.png --model HaochenWang/GAR-1B",
    )
    parser.add_argument(
        "--all-objects",
        action="store_true",
        help="on the sample clip, describe both objects together (default: the first)",
    )
    add_overlay_arg(parser, "describe.mp4")
    args = parse_demo_args(parser, argv)

    streamed: list[str] = []

    def stream(piece: str) -> None:
        streamed.append(piece)
        write_stdout(piece)

    try:
        inp = resolve_input(args)
        masks = inp.masks if (inp.sample is None or args.all_objects) else inp.masks[:1]
        res = describe_clip(
            inp.video,
            masks,
            overlay_path(args),
            frame=inp.frame,
            model=args.model,
            tracker=args.tracker,
            sam2_checkpoint=args.sam2_checkpoint,
            num_frames=args.num_frames,
            max_new_tokens=args.max_new_tokens,
            device=args.device,
            on_text=stream,
        )
    except (InputError, ModelUnavailableError) as exc:
        print(("\n" if streamed else "") + error_line(exc), file=sys.stderr)
        return 2
    print()
    print(f"keyframes {res.frames}, tracker {res.tracker}, model {res.model}")
    for note in res.notes:
        print(f"note: {note}")
    print(f"overlay: {res.overlay}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
