"""What the demo scripts share: the input options (a user's clip, or the synthetic sample clip by
default), the model options, parsed the same way in every script and turned into a
:class:`~garvideo.options.GarVideoOptions` by :func:`demo_options`, and the one-line error the scripts
print (library fields named by the scripts' flags, :data:`DEMO_FLAGS`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from garvideo.demos.sample_clip import SampleClip, make_sample_clip
from garvideo.errors import GarVideoError, InputError
from garvideo.masks import load_mask, load_masks
from garvideo.options import GarVideoOptions
from garvideo.pipeline.settings import PipelineSettings
from garvideo.trackers.base import Tracker
from garvideo.video import open_video

if TYPE_CHECKING:
    from garvideo.model.loading import GarBundle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoInput:
    """The clip a demo runs on and the objects given on one of its frames.

    Attributes:
        video: the clip (file or frame folder).
        masks: one ``(H, W)`` bool mask per object, on ``frame``; object ``k`` is ``<object{k}>``.
        frame: the frame the masks are drawn on.
        sample: the generated sample clip (ground truth available), or ``None`` for a user's clip.
    """

    video: Path
    masks: list[np.ndarray]
    frame: int
    sample: SampleClip | None = None


def add_input_args(parser: argparse.ArgumentParser) -> None:
    """``--video/--mask/--frame/--resize-masks/--out``: a user's clip, or the sample clip by default."""
    parser.add_argument(
        "--video",
        type=Path,
        default=None,
        help="your clip (file or frame folder); default: generate the synthetic sample clip",
    )
    parser.add_argument(
        "--mask",
        type=Path,
        action="append",
        default=None,
        help="mask file of the object(s) on --frame (PNG id map or 0/255, .npy, COCO RLE .json); "
        "repeat for more objects; required with --video",
    )
    parser.add_argument("--frame", type=int, default=0, help="frame the masks are drawn on (default 0)")
    parser.add_argument("--resize-masks", action="store_true", help="resize masks to the frame size")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="output folder (default out/demo); the sample clip is written under it",
    )


def add_tracker_args(parser: argparse.ArgumentParser) -> None:
    """``--tracker/--sam2-checkpoint``, as ``garvideo track``."""
    parser.add_argument("--tracker", default="auto", help="auto | sam2 | flow | static (default auto)")
    parser.add_argument(
        "--sam2-checkpoint",
        default=None,
        help="SAM 2.1 checkpoint (default: $GARVIDEO_SAM2_CHECKPOINT, else the flow tracker)",
    )


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model/--num-frames/--max-new-tokens/--device``, as ``garvideo describe``."""
    parser.add_argument(
        "--model",
        default=None,
        help="GAR hub id or local folder (default: $GARVIDEO_MODEL, else HaochenWang/GAR-1B); "
        "a tiny random model from `garvideo make-tiny-model DIR` works for a smoke test",
    )
    parser.add_argument("--num-frames", type=int, default=8, help="keyframes given to the model (default 8)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=256, help="generation length limit (default 256)"
    )
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")


def resolve_input(args: argparse.Namespace, *, min_objects: int = 1) -> DemoInput:
    """The clip and masks from the parsed options: the user's, or a freshly generated sample clip.

    Raises:
        InputError: ``--video`` without ``--mask`` (or the reverse), unreadable files, fewer objects
            than ``min_objects``.
    """
    if args.video is None:
        if args.mask:
            raise InputError(
                "masks", "give --video too (without --video the sample clip and its masks are used)"
            )
        sample = make_sample_clip(Path(args.out) / "sample")
        masks = load_mask(sample.prompt_mask)  # both objects, frame 0
        logger.info("using the sample clip %s (%d objects)", sample.video_path, len(masks))
        return DemoInput(video=sample.video_path, masks=masks, frame=0, sample=sample)
    if not args.mask:
        raise InputError("masks", "give the object(s) on --frame with --mask FILE (repeat for more objects)")
    with open_video(args.video) as video:
        masks = load_masks(args.mask, (video.height, video.width), resize=args.resize_masks)
        video.check_index(args.frame)
    if len(masks) < min_objects:
        raise InputError(
            "masks", f"this demo needs at least {min_objects} objects, the mask file(s) hold {len(masks)}"
        )
    return DemoInput(video=Path(args.video), masks=masks, frame=int(args.frame))


def demo_options(
    *,
    model: str | os.PathLike[str] | GarBundle | None = None,
    tracker: str | Tracker = "auto",
    sam2_checkpoint: str | os.PathLike[str] | None = None,
    num_frames: int = 8,
    max_new_tokens: int = 256,
    device: str | None = None,
) -> GarVideoOptions:
    """The :class:`~garvideo.options.GarVideoOptions` of a demo's model options (``--model``,
    ``--tracker``, ``--sam2-checkpoint``, ``--num-frames``, ``--max-new-tokens``, ``--device``; the demo
    functions take the same keywords); build the pipeline with :func:`garvideo.options.build_garvideo`.

    Args:
        model: GAR hub id, folder or an already loaded bundle (``None``: ``$GARVIDEO_MODEL``, else GAR-1B).
        tracker: a tracker name or a built tracker.
        sam2_checkpoint: for the ``sam2``/``auto`` tracker (``None`` or empty: its default lookup).
        num_frames: keyframes given to the model.
        max_new_tokens: generation length limit.
        device: torch device (``None``: CUDA when available).

    Raises:
        InputError: a bad setting (named by its field, e.g. ``num_frames``).
    """
    return GarVideoOptions(
        model=model,
        tracker=tracker,
        sam2_checkpoint=os.fspath(sam2_checkpoint) if sam2_checkpoint else None,
        device=device,
        settings=PipelineSettings(num_frames=num_frames, max_new_tokens=max_new_tokens),
    )


#: Library field (an :class:`~garvideo.errors.InputError`'s ``source``) -> the demo scripts' flag.
DEMO_FLAGS: dict[str, str] = {
    "video": "--video",
    "masks": "--mask",
    "frame": "--frame",
    "tracker": "--tracker",
    "sam2_checkpoint": "--sam2-checkpoint",
    "model": "--model",
    "num_frames": "--num-frames",
    "max_new_tokens": "--max-new-tokens",
    "device": "--device",
    "question": "--question",
    "options": "--option",
    "overlay": "--overlay",
    "out": "--out",
    "sam3_checkpoint": "--sam3-checkpoint",
    "text_threshold": "--text-threshold",
    "port": "--port",
}


def error_line(exc: GarVideoError) -> str:
    """The one stderr line of a demo script for a garvideo error: ``error: <flag or file>: <problem>``."""
    if isinstance(exc, InputError) and exc.source is not None:
        return f"error: {DEMO_FLAGS.get(exc.source, exc.source)}: {exc.problem}"
    return f"error: {exc}"


def demo_parser(prog: str, description: str, epilog: str, *, model: bool = True) -> argparse.ArgumentParser:
    """A demo script's parser with the input and tracker options, and the model options (``model=True``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    add_input_args(parser)
    add_tracker_args(parser)
    if model:
        add_model_args(parser)
    return parser


def add_overlay_arg(parser: argparse.ArgumentParser, default_name: str) -> None:
    """``--overlay``: the overlay video, default ``OUT/<default_name>`` (see :func:`overlay_path`)."""
    parser.add_argument(
        "--overlay", type=Path, default=None, help=f"overlay video (default OUT/{default_name})"
    )
    parser.set_defaults(overlay_name=default_name)


def parse_demo_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse a demo's command line and set up warnings-only logging on stderr."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args


def overlay_path(args: argparse.Namespace) -> Path:
    """``--overlay``, else ``OUT/<the parser's default overlay name>``."""
    return args.overlay or Path(args.out) / args.overlay_name


def write_stdout(piece: str) -> None:
    """Print streamed text as it comes (no newline added)."""
    sys.stdout.write(piece)
    sys.stdout.flush()
