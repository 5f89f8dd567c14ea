"""Mask propagation: from the user's mask(s) on one frame to a mask per object on every frame.

Backends (see each module): ``sam2`` (SAM 2.1 video model driven by garvideo's own streaming loop),
``flow`` (weight-free: optical flow + appearance models; the default without a SAM2 checkpoint) and
``static`` (the prompt copied to every frame: the baseline).

Example::

    from garvideo.video import open_video
    from garvideo.masks import load_mask
    from garvideo.trackers import Prompt, build_tracker

    with open_video("clip.mp4") as video:
        (mask,) = load_mask("mask.png", size=(video.height, video.width))
        tracker = build_tracker("auto")
        result = tracker.track(video, [Prompt(obj_id=1, frame=0, mask=mask)])
        result.mask(10, 1)  # (H, W) bool
"""

from __future__ import annotations

import logging
import os

from garvideo.errors import InputError
from garvideo.trackers.base import Prompt, Session, Tracker, TrackResult, VideoLike
from garvideo.trackers.flow import FlowOptions, FlowTracker
from garvideo.trackers.static import StaticTracker

logger = logging.getLogger(__name__)

TRACKERS = ("auto", "sam2", "flow", "static")
CHECKPOINT_ENV = "GARVIDEO_SAM2_CHECKPOINT"

__all__ = [
    "CHECKPOINT_ENV",
    "TRACKERS",
    "FlowOptions",
    "FlowTracker",
    "Prompt",
    "Session",
    "StaticTracker",
    "TrackResult",
    "Tracker",
    "VideoLike",
    "build_tracker",
    "find_sam2_checkpoint",
]


def find_sam2_checkpoint(checkpoint: str | None = None) -> str | None:
    """The SAM2 checkpoint ``auto`` would use: the option, else ``$GARVIDEO_SAM2_CHECKPOINT``, else a
    SAM 2.1 checkpoint already in the Hugging Face cache; ``None`` when there is none.

    A path given explicitly (option or environment) is returned as is, even if it does not exist,
    so that the sam2 backend reports the problem instead of silently falling back.
    """
    if checkpoint:
        return str(checkpoint)
    env = os.environ.get(CHECKPOINT_ENV)
    if env:
        return env
    try:
        from garvideo.trackers.sam2_backend import cached_hub_checkpoint
    except ImportError:  # sam2 not installed
        return None
    return cached_hub_checkpoint()


def build_tracker(name: str = "auto", **options: object) -> Tracker:
    """Build a tracker by name.

    Args:
        name: ``"auto"`` (sam2 when a checkpoint is found — option ``sam2_checkpoint``,
            ``$GARVIDEO_SAM2_CHECKPOINT`` or the Hugging Face cache — flow otherwise), ``"sam2"``,
            ``"flow"`` or ``"static"``.
        **options: backend options: for sam2 ``sam2_checkpoint``, ``sam2_config``, ``image_size``,
            ``device``, ``threads``...; for flow the :class:`FlowOptions` fields and ``threads``.
            Options of the other backends are ignored (so one option set serves ``auto``).

    Returns:
        the tracker; its ``name`` says which backend was picked (also logged, and recorded in
        :attr:`TrackResult.tracker`).

    Raises:
        InputError: an unknown name or option, or an unreadable checkpoint.
    """
    if name not in TRACKERS:
        raise InputError("--tracker", f"unknown tracker {name!r} (choose from {', '.join(TRACKERS)})")
    sam2_keys = {
        "sam2_checkpoint",
        "sam2_config",
        "image_size",
        "device",
        "threads",
        "fill_hole_area",
        "every_frame",
        "model",
    }
    flow_keys = set(FlowOptions.__dataclass_fields__) | {"threads"}
    selection = None
    if name == "auto":
        ckpt = find_sam2_checkpoint(options.get("sam2_checkpoint"))  # type: ignore[arg-type]
        if ckpt is not None:
            name = "sam2"
            options = {**options, "sam2_checkpoint": ckpt}
            selection = f"auto: sam2, checkpoint {ckpt}"
        else:
            name = "flow"
            selection = (
                f"auto: flow, no SAM2 checkpoint; pass --sam2-checkpoint or set {CHECKPOINT_ENV} for sam2"
            )
        logger.info("tracker %s", selection)
    unknown = set(options) - sam2_keys - flow_keys
    if unknown:
        raise InputError("tracker options", f"unknown option(s): {', '.join(sorted(unknown))}")
    tracker: Tracker
    if name == "static":
        tracker = StaticTracker()
    elif name == "flow":
        tracker = FlowTracker(**{k: v for k, v in options.items() if k in flow_keys})  # type: ignore[arg-type]
    else:
        from garvideo.trackers.sam2_backend import Sam2Tracker

        tracker = Sam2Tracker(**{k: v for k, v in options.items() if k in sam2_keys})  # type: ignore[arg-type]
    tracker.selection = selection
    return tracker
