"""Clip encoding: one 448×448 tile per keyframe with the frame's union mask, then per-frame RoI replay."""

from __future__ import annotations

import time
from typing import Any

import torch

from garvideo.errors import InputError
from garvideo.pipeline.clip import PreparedClip

__all__ = ["encode_clip"]


def encode_clip(bundle: Any, clip: PreparedClip, roi_mode: str) -> PreparedClip:
    """Encode ``clip``'s keyframes with ``bundle`` (a :class:`garvideo.model.GarBundle`) and replay each
    object's regions from its own frame's map and box; stores features and regions on the clip.

    A no-op when the clip was already encoded by this model with these settings
    (:meth:`PreparedClip.cache_key_for`); any other model or setting recomputes."""
    from garvideo.model.prompts import video_region_order

    key = PreparedClip.cache_key_for(bundle, roi_mode)
    if clip.encoded_for(key, bundle.model):
        return clip
    if clip.video is None:
        raise InputError(clip.source, "the prepared clip was closed")
    t0 = time.perf_counter()
    images = dict(clip.video.frames(list(clip.frames)))
    t1 = time.perf_counter()
    frames_rgb = [images[f] for f in clip.frames]
    unions = [clip.masks[t].any(axis=0) for t in range(len(clip.frames))]  # (H, W) per keyframe
    feats = bundle.encode_frames(frames_rgb, unions)  # tokens (K, 256, D), maps (K, D, 16, 16)
    order = video_region_order(clip.present)  # (object, keyframe position), prompt order
    if order:
        boxes = [clip.objects[o].boxes[t] for o, t in order]
        with torch.inference_mode():
            regions = bundle.replay_regions(feats.maps, boxes, [t for _, t in order], roi_mode)  # (R, 256, D)
    else:
        regions = None
    t2 = time.perf_counter()
    clip.features, clip.regions, clip.roi_mode = feats, regions, roi_mode
    clip.model_name = str(bundle.name)
    clip.remember_encoder(key, bundle.model)
    clip.prefix_caches.clear()
    clip.timings["decode"] = clip.timings.get("decode", 0.0) + (t1 - t0)
    clip.timings["vision"] = clip.timings.get("vision", 0.0) + (t2 - t1)
    return clip
