"""Mask propagation: from the user's mask(s) on one frame to a mask per object on every frame.

Backends (see each module): ``sam2`` (SAM 2.1 video model driven by garvideo's own streaming loop),
``sam3`` and ``edgetam`` (transformers' ``Sam3TrackerVideoModel`` / ``EdgeTamVideoModel``, streamed the same
way: :mod:`garvideo.trackers.hf_video`),
``flow`` (weight-free: optical flow + appearance models; what ``auto`` falls back to when no SAM 2
checkpoint can be found or downloaded) and ``static`` (the prompt copied to every frame: the baseline).

``auto`` resolves SAM 2 as GAR is resolved (:func:`resolve_sam2`): the ``sam2_checkpoint`` option /
``$GARVIDEO_SAM2_CHECKPOINT`` (a ``.pt`` file or a hub id), then a SAM 2.1 checkpoint in the Hugging
Face cache, then a download of the device's default (:data:`DEFAULT_HUB_CHECKPOINT`: hiera-large on
CUDA, hiera-tiny on CPU) when online; ``flow`` only when offline or the download fails. Every built
tracker says which backend it is and why (``Tracker.selection``, copied to ``TrackResult.reason``).

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

from typing import TYPE_CHECKING

from garvideo._lazy import lazy_exports

if TYPE_CHECKING:
    from garvideo.trackers.base import Session, Tracker, TrackResult
    from garvideo.trackers.build import Sam2Resolution, build_tracker, find_sam2_checkpoint, resolve_sam2
    from garvideo.trackers.flow import FlowOptions, FlowTracker, parse_flow_options
    from garvideo.trackers.names import CHECKPOINT_ENV, HOW_TO_GET_SAM2, PROMPTABLE_TRACKERS, TRACKERS
    from garvideo.trackers.prompts import build_prompts, masks_from_prompts, parse_box, parse_points
    from garvideo.trackers.static import StaticTracker
    from garvideo.trackers.types import Prompt, VideoLike

# Name -> submodule: a submodule is imported on first use of one of its names (garvideo._lazy), so that
# ``import garvideo.trackers.names`` (or ``.types``) loads neither OpenCV's flow code nor the builders.
_EXPORTS = {
    "Prompt": "types",
    "VideoLike": "types",
    "Session": "base",
    "Tracker": "base",
    "TrackResult": "base",
    "Sam2Resolution": "build",
    "build_tracker": "build",
    "find_sam2_checkpoint": "build",
    "resolve_sam2": "build",
    "FlowOptions": "flow",
    "FlowTracker": "flow",
    "parse_flow_options": "flow",
    "CHECKPOINT_ENV": "names",
    "HOW_TO_GET_SAM2": "names",
    "PROMPTABLE_TRACKERS": "names",
    "TRACKERS": "names",
    "build_prompts": "prompts",
    "masks_from_prompts": "prompts",
    "parse_box": "prompts",
    "parse_points": "prompts",
    "StaticTracker": "static",
}

__all__ = [
    "CHECKPOINT_ENV",
    "HOW_TO_GET_SAM2",
    "PROMPTABLE_TRACKERS",
    "TRACKERS",
    "FlowOptions",
    "FlowTracker",
    "Prompt",
    "Sam2Resolution",
    "Session",
    "StaticTracker",
    "TrackResult",
    "Tracker",
    "VideoLike",
    "build_prompts",
    "build_tracker",
    "find_sam2_checkpoint",
    "masks_from_prompts",
    "parse_box",
    "parse_flow_options",
    "parse_points",
    "resolve_sam2",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
