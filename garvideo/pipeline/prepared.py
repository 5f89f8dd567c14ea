"""The prepared clip: what :func:`~garvideo.pipeline.clip.prepare_clip` makes and every later stage reads.

Kept apart from the stage modules so that each of them (clip, encoding, prompt, generation, batching,
results) can use it without importing another stage.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from garvideo.trackers.base import TrackResult
from garvideo.trackers.types import VideoLike

if TYPE_CHECKING:
    from garvideo.model import FrameFeatures, GarBundle, GarModel, PrefixCache

__all__ = ["CacheKey", "FrameMasks", "ObjectInfo", "PreparedClip"]

#: Per object, ``{frame index: (H, W) bool mask or None}`` (``None``: absent on that frame).
FrameMasks = Mapping[int, np.ndarray | None]
#: What a clip's features were computed with (:meth:`PreparedClip.cache_key_for`).
CacheKey = tuple[Any, ...]


@dataclass
class ObjectInfo:
    """One object of a prepared clip.

    Attributes:
        index: K of ``<objectK>`` (the order of the masks).
        prompt_token: the token a describe prompt uses for it (``<Prompt1>`` alone, ``<PromptK>`` among
            several); a question about a single object uses ``<Prompt0>`` (GAR-Bench convention).
        prompt_frame: the frame its mask was given on (``None`` for per-frame masks given as is).
        present: per keyframe, whether it is visible (non-empty mask).
        boxes: per keyframe, its normalised box ``(x_min/W, y_min/H, x_max/W, y_max/H)`` (``None`` if absent).
    """

    index: int
    prompt_token: str
    prompt_frame: int | None
    present: list[bool]
    boxes: list[tuple[float, float, float, float] | None]

    def to_json(self, frames: Sequence[int]) -> dict[str, Any]:
        return {
            "id": f"object{self.index}",
            "prompt_token": self.prompt_token,
            "prompt_frame": self.prompt_frame,
            "visible_frames": [int(f) for f, p in zip(frames, self.present) if p],
            "absent_frames": [int(f) for f, p in zip(frames, self.present) if not p],
            "boxes": {
                str(int(f)): [round(v, 5) for v in b] for f, b in zip(frames, self.boxes) if b is not None
            },
        }


@dataclass
class PreparedClip:
    """A clip ready for questions: keyframes, masks and (once encoded) features and prefix caches.

    Made by :meth:`GarVideo.prepare`; pass it to :meth:`GarVideo.describe` / :meth:`GarVideo.ask`
    as often as needed. It keeps the video open (for lazy encoding); :meth:`close` releases it.

    Attributes:
        source: the video's path.
        num_frames, fps, height, width: the clip's metadata.
        frames: the keyframe indices, ascending.
        objects: per object, presence and boxes on the keyframes.
        masks: ``(K, O, H, W)`` bool, each object's mask on each keyframe.
        tracker: the tracker that made the masks (``"given"`` for per-frame masks used as given).
        track: the full :class:`garvideo.trackers.TrackResult` (``None`` for given masks); it holds
            every frame when prepared with ``track_all_frames=True`` (e.g. for an overlay).
        tracker_reason: which tracker ran and why (``TrackResult.reason``); also the first note.
        notes: what the pipeline changed or noticed (reduced K, absent objects …).
        timings: seconds spent preparing, by stage (``decode``, ``tracking``, ``vision``).
    """

    source: str
    num_frames: int
    fps: float
    height: int
    width: int
    frames: list[int]
    objects: list[ObjectInfo]
    masks: np.ndarray
    tracker: str
    track: TrackResult | None = None
    tracker_reason: str = ""
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    video: VideoLike | None = field(default=None, repr=False)
    features: FrameFeatures | None = field(default=None, repr=False)  # tokens (K, 256, D), maps (K, D, 16, 16)
    regions: torch.Tensor | None = field(default=None, repr=False)  # (R, 256, D) in prompt order
    roi_mode: str | None = None
    model_name: str | None = None
    #: What :attr:`features`, :attr:`regions` and :attr:`prefix_caches` were computed with: model identity
    #: and settings (see :meth:`cache_key_for`); a clip reused with another model or setting recomputes.
    cache_key: CacheKey | None = field(default=None, repr=False)
    model_ref: weakref.ref[GarModel] | None = field(default=None, repr=False)  # guards against id reuse
    prefix_caches: OrderedDict[tuple[Any, ...], PrefixCache] = field(default_factory=OrderedDict, repr=False)
    timings_reported: bool = False
    prepared_at: float = 0.0  # perf_counter() when prepare() started

    @property
    def num_objects(self) -> int:
        return len(self.objects)

    @property
    def present(self) -> list[list[bool]]:
        """``present[k][t]``: object k visible on keyframe t (the layout :func:`build_video_prompt` takes)."""
        return [list(o.present) for o in self.objects]

    @property
    def encoded(self) -> bool:
        return self.features is not None

    def masks_by_frame(self) -> TrackResult | dict[int, dict[int, np.ndarray]]:
        """What :func:`garvideo.overlay.render_overlay` draws: the tracking result, or the keyframe masks
        as ``{frame: {object id (1-based): mask}}``."""
        if self.track is not None:
            return self.track
        return {
            int(f): {k + 1: self.masks[t, k] for k in range(self.num_objects)}
            for t, f in enumerate(self.frames)
        }

    def objects_json(self) -> list[dict[str, Any]]:
        return [o.to_json(self.frames) for o in self.objects]

    @staticmethod
    def cache_key_for(bundle: GarBundle, roi_mode: str) -> CacheKey:
        """Identity of the model and the settings the clip's features and caches depend on.

        The model object (its ``id``, checked with a weak reference), its name, dtype and device, the
        processor's tile size and normalisation, and the RoI mode.
        """
        ip = bundle.processor.image_processor
        return (
            id(bundle.model),
            str(bundle.name),
            str(bundle.dtype),
            str(bundle.device),
            int(ip.tile_size),
            tuple(ip.image_mean),
            tuple(ip.image_std),
            str(roi_mode),
        )

    def encoded_for(self, key: CacheKey, model: GarModel) -> bool:
        """Whether the features were computed with this key by this very model object."""
        return (
            self.features is not None
            and self.cache_key == key
            and self.model_ref is not None
            and self.model_ref() is model
        )

    def remember_encoder(self, key: CacheKey, model: GarModel) -> None:
        """Record what the features just stored were computed with (see :meth:`encoded_for`)."""
        self.cache_key, self.model_ref = key, weakref.ref(model)

    def close(self) -> None:
        """Release the video and the cached features."""
        close = getattr(self.video, "close", None)  # a VideoLike need not have close()
        if close is not None:
            close()
        self.video = None
        self.features = None
        self.regions = None
        self.cache_key = self.model_ref = None
        self.prefix_caches.clear()
