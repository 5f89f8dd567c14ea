"""Clip encoding: one 448×448 tile per keyframe with the frame's union mask, then per-frame RoI replay."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import torch

from garvideo.errors import InputError
from garvideo.model.prompts import video_region_order
from garvideo.pipeline.prepared import PreparedClip

if TYPE_CHECKING:
    from garvideo.model import GarBundle, RoiMode

__all__ = ["encode_clip"]


def encode_clip(bundle: GarBundle, clip: PreparedClip, roi_mode: str) -> PreparedClip:
    """Encode ``clip``'s keyframes with ``bundle`` and replay each object's regions from its own frame's map
    and box; stores features and regions on the clip (and clears its prefix caches).

    A no-op when the clip was already encoded by this model with these settings
    (:meth:`PreparedClip.cache_key_for`); any other model or setting recomputes.

    Args:
        bundle: the loaded model.
        clip: a prepared clip (its video still open unless already encoded).
        roi_mode: ``"official"`` or ``"corrected"`` (validated by :class:`~garvideo.pipeline.settings.PipelineSettings`).

    Returns:
        ``clip``, with ``features`` (tokens ``(K, 256, D)``, maps ``(K, D, 16, 16)``) and ``regions``
        ``(R, 256, D)`` in prompt order (``None`` when no object is visible on any keyframe).

    Raises:
        InputError: the clip was closed.
    """
    key = PreparedClip.cache_key_for(bundle, roi_mode)
    if clip.encoded_for(key, bundle.model):
        return clip
    if clip.video is None:
        raise InputError(clip.source, "the prepared clip was closed")
    t0 = time.perf_counter()
    images = dict(clip.video.frames(list(clip.frames)))
    t1 = time.perf_counter()
    frames_rgb = [images[f] for f in clip.frames]  # (H, W, 3) uint8 each
    unions = [clip.masks[t].any(axis=0) for t in range(len(clip.frames))]  # (H, W) per keyframe
    feats = bundle.encode_frames(frames_rgb, unions)  # tokens (K, 256, D), maps (K, D, 16, 16)
    order = video_region_order(clip.present)  # (object, keyframe position), prompt order
    regions: torch.Tensor | None = None
    if order:
        boxes = [clip.objects[o].boxes[t] for o, t in order]
        mode = cast("RoiMode", roi_mode)  # one of ROI_MODES: checked by PipelineSettings
        with torch.inference_mode():
            regions = bundle.replay_regions(feats.maps, boxes, [t for _, t in order], mode)  # (R, 256, D)
    t2 = time.perf_counter()
    clip.features, clip.regions, clip.roi_mode = feats, regions, roi_mode
    clip.model_name = str(bundle.name)
    clip.remember_encoder(key, bundle.model)
    clip.prefix_caches.clear()
    clip.timings["decode"] = clip.timings.get("decode", 0.0) + (t1 - t0)
    clip.timings["vision"] = clip.timings.get("vision", 0.0) + (t2 - t1)
    return clip
