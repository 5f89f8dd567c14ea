"""Clip preparation: open the video, track the objects, choose the keyframes -> :class:`PreparedClip`.

The budget rule (:mod:`garvideo.pipeline.budget`) may reduce K here; encoding the keyframes is
:mod:`garvideo.pipeline.encoding`'s job (called at the end when ``encode=True``).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from garvideo.errors import InputError, PathLike
from garvideo.keyframes import STRATEGIES, select_keyframes
from garvideo.pipeline.budget import frame_cost

if TYPE_CHECKING:
    from garvideo.pipeline.facade import GarVideo

__all__ = ["FrameMasks", "ObjectInfo", "PreparedClip", "prepare_clip"]

logger = logging.getLogger(__name__)

FrameMasks = Mapping[int, np.ndarray | None]


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
    track: Any = None
    tracker_reason: str = ""
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    video: Any = field(default=None, repr=False)
    features: Any = field(default=None, repr=False)  # garvideo.model.FrameFeatures once encoded
    regions: torch.Tensor | None = field(default=None, repr=False)  # (R, 256, D) in prompt order
    roi_mode: str | None = None
    model_name: str | None = None
    #: What :attr:`features`, :attr:`regions` and :attr:`prefix_caches` were computed with: model identity
    #: and settings (see :meth:`cache_key_for`); a clip reused with another model or setting recomputes.
    cache_key: tuple[Any, ...] | None = field(default=None, repr=False)
    model_ref: Any = field(default=None, repr=False)  # weakref to that model (guards against id reuse)
    prefix_caches: OrderedDict[tuple[Any, ...], Any] = field(default_factory=OrderedDict, repr=False)
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

    def masks_by_frame(self) -> Any:
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
    def cache_key_for(bundle: Any, roi_mode: str) -> tuple[Any, ...]:
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

    def encoded_for(self, key: tuple[Any, ...], model: Any) -> bool:
        """Whether the features were computed with this key by this very model object."""
        return (
            self.features is not None
            and self.cache_key == key
            and self.model_ref is not None
            and self.model_ref() is model
        )

    def remember_encoder(self, key: tuple[Any, ...], model: Any) -> None:
        """Record what the features just stored were computed with (see :meth:`encoded_for`)."""
        self.cache_key, self.model_ref = key, weakref.ref(model)

    def close(self) -> None:
        """Release the video and the cached features."""
        if self.video is not None and hasattr(self.video, "close"):
            self.video.close()
        self.video = None
        self.features = None
        self.regions = None
        self.cache_key = self.model_ref = None
        self.prefix_caches.clear()


def prepare_clip(
    gv: GarVideo,
    video: PathLike | Any,
    masks: np.ndarray | Sequence[np.ndarray] | None = None,
    frame: int = 0,
    frame_masks: Sequence[FrameMasks] | None = None,
    *,
    num_frames: int | None = None,
    keyframes: str | None = None,
    include_prompt_frame: bool | None = None,
    encode: bool = True,
    track_all_frames: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PreparedClip:
    """The work of :meth:`GarVideo.prepare` (see there for the arguments and errors)."""
    from garvideo.model.processing import mask_box
    from garvideo.model.prompts import MAX_REGIONS, prompt_indices, prompt_token

    t_start = time.perf_counter()
    k_req = gv.num_frames if num_frames is None else int(num_frames)
    strategy = gv.keyframes if keyframes is None else keyframes
    include = gv.include_prompt_frame if include_prompt_frame is None else bool(include_prompt_frame)
    if strategy not in STRATEGIES:
        raise InputError(
            "--keyframes", f"unknown keyframe strategy {strategy!r} (choose from {', '.join(STRATEGIES)})"
        )
    if k_req < 1:
        raise InputError("--num-frames", f"must be a positive integer, got {k_req}")
    if (masks is None) == (frame_masks is None):
        raise InputError(
            "masks", "give either masks (on one frame, tracked) or frame_masks (per frame), exactly one"
        )

    if encode:
        gv.bundle  # noqa: B018 - load the model first: the budget counts with its tokenizer and context
    vid, owned = _open(video)
    try:
        n, h, w = int(vid.num_frames), int(vid.height), int(vid.width)
        fps = float(getattr(vid, "fps", 0.0) or 0.0)
        notes: list[str] = []
        timings: dict[str, float] = {"decode": 0.0, "tracking": 0.0, "vision": 0.0}

        if masks is not None:
            mask_list = [masks] if isinstance(masks, np.ndarray) and masks.ndim == 2 else list(masks)
            num_obj = len(mask_list)
        else:
            fm_list = list(frame_masks or [])
            num_obj = len(fm_list)
        if not 1 <= num_obj <= MAX_REGIONS:
            raise InputError("--mask", f"expected 1 to {MAX_REGIONS} objects, got {num_obj}")

        # Budget: reduce K (and say so) rather than ever truncating a prompt.
        k = k_req
        k_max = gv.max_keyframes(num_obj)
        if k_max < 1:
            raise InputError(
                "--max-new-tokens",
                f"not even one keyframe fits the {gv.context_length()}-position context with {num_obj} "
                f"object(s) and {gv.max_new_tokens} new tokens",
            )
        if k > k_max:
            notes.append(
                f"reduced the keyframes from {k} to {k_max}: each keyframe costs {frame_cost(num_obj)} tokens "
                f"(256 global + 256 per object, {num_obj} object(s)) and {k} would not fit the model's "
                f"{gv.context_length()}-position context with {gv.max_new_tokens} new tokens"
            )
            logger.info(notes[-1])
            k = k_max

        if masks is not None:
            checked = [_check_mask(m, (h, w), f"masks[{i}]") for i, m in enumerate(mask_list)]
            if not 0 <= frame < n:
                raise InputError(
                    "--frame", f"frame {frame} is out of range: the video has {n} frames (0..{n - 1})"
                )
            frames, track, kf_masks, tracker_name = track_keyframes(
                gv, vid, checked, int(frame), k, strategy, include, fps, track_all_frames, progress, timings
            )
            prompt_frames: list[int | None] = [int(frame)] * num_obj
            # Say which tracker ran and why (e.g. flow because offline), first among the notes.
            notes.insert(0, f"tracker: {track.reason or tracker_name}")
        else:
            given = [_check_frame_masks(fm, n, (h, w), i) for i, fm in enumerate(fm_list)]
            frames = _keyframes_from_given(given, n, k, strategy, fps, gv.per_second)
            kf_masks = np.zeros((len(frames), num_obj, h, w), dtype=bool)
            for t, f in enumerate(frames):
                for o, fm in enumerate(given):
                    m = fm.get(f)
                    if m is not None:
                        kf_masks[t, o] = m
            track, tracker_name = None, "given"
            prompt_frames = [None] * num_obj

        if len(frames) < k:
            notes.append(f"the clip gives {len(frames)} keyframes, fewer than the {k} asked for")
        indices = prompt_indices(num_obj)
        objects = []
        for o in range(num_obj):
            present = [bool(kf_masks[t, o].any()) for t in range(len(frames))]
            boxes = [mask_box(kf_masks[t, o]) if present[t] else None for t in range(len(frames))]
            objects.append(ObjectInfo(o, prompt_token(indices[o]), prompt_frames[o], present, boxes))
            absent = [int(f) for f, p in zip(frames, present) if not p]
            if len(absent) == len(frames):
                notes.append(
                    f"object{o} is not visible on any keyframe: it gets no region tokens and the prompt "
                    "leaves it out of the object list"
                )
            elif absent:
                notes.append(
                    f"object{o} is absent on keyframe(s) {', '.join(map(str, absent))}: no region tokens "
                    "for those frames"
                )
        clip = PreparedClip(
            source=str(getattr(vid, "source", video)),
            num_frames=n,
            fps=fps,
            height=h,
            width=w,
            frames=[int(f) for f in frames],
            objects=objects,
            masks=kf_masks,
            tracker=tracker_name,
            track=track,
            tracker_reason="masks given per frame (no tracking)" if track is None else track.reason,
            notes=notes,
            timings=timings,
            video=vid,
        )
        if encode:
            gv.encode(clip)
        clip.timings["prepare"] = time.perf_counter() - t_start
        clip.prepared_at = t_start
        return clip
    except BaseException:
        if owned:
            vid.close()
        raise


def track_keyframes(
    gv: GarVideo,
    vid: Any,
    masks: list[np.ndarray],
    frame: int,
    k: int,
    strategy: str,
    include: bool,
    fps: float,
    track_all: bool,
    progress: Callable[[int, int], None] | None,
    timings: dict[str, float],
) -> tuple[list[int], Any, np.ndarray, str]:
    """Track ``masks`` from ``frame`` and pick the keyframes: (frames, track result, ``(K, O, H, W)`` keyframe
    masks, tracker name)."""
    from garvideo.trackers import Prompt

    n, h, w = int(vid.num_frames), int(vid.height), int(vid.width)
    obj_ids = list(range(1, len(masks) + 1))
    prompts = [Prompt(obj_id=i, frame=frame, mask=m) for i, m in zip(obj_ids, masks)]
    needs_all = track_all or strategy == "visible"
    frames: list[int] | None = None
    if not needs_all:
        frames = select_keyframes(
            n,
            k,
            strategy,
            include_frame=frame if include else None,
            fps=fps or None,
            per_second=gv.per_second,
        )
    result = gv.tracker.track(vid, prompts, frames=None if needs_all else frames, progress=progress)
    timings["decode"] += float(result.timings.get("decode", 0.0))
    timings["tracking"] += float(result.timings.get("track", result.timings.get("total", 0.0)))
    if frames is None:
        visible = None
        if strategy == "visible":
            visible = np.array([[result.present(f, o) for o in obj_ids] for f in range(n)], dtype=bool)
        frames = select_keyframes(
            n,
            k,
            strategy,
            include_frame=frame if include else None,
            visible=visible,
            fps=fps or None,
            per_second=gv.per_second,
        )
    kf = np.zeros((len(frames), len(masks), h, w), dtype=bool)
    for t, f in enumerate(frames):
        for j, o in enumerate(obj_ids):
            if f == frame:
                kf[t, j] = masks[j]  # the prompt itself, exactly as given
            elif result.present(f, o):
                kf[t, j] = result.mask(f, o)
    return frames, result, kf, str(result.tracker)


def _open(video: Any) -> tuple[Any, bool]:
    """A :class:`garvideo.video.Video` and whether we opened it."""
    if hasattr(video, "frames") and hasattr(video, "num_frames"):
        return video, False
    from garvideo.video import open_video

    return open_video(video), True


def _check_mask(mask: Any, size: tuple[int, int], source: str) -> np.ndarray:
    from garvideo.model.processing import as_binary_mask

    m = as_binary_mask(mask, size, source=source)
    if not m.any():
        raise InputError(source, "mask is empty (no pixel set)")
    return m


def _check_frame_masks(fm: Any, n: int, size: tuple[int, int], obj: int) -> dict[int, np.ndarray | None]:
    from garvideo.model.processing import as_binary_mask

    if not isinstance(fm, Mapping):
        raise InputError(f"frame_masks[{obj}]", "must map frame indices to masks")
    out: dict[int, np.ndarray | None] = {}
    for f, m in fm.items():
        try:
            fi = int(f)
        except (TypeError, ValueError) as exc:
            raise InputError(f"frame_masks[{obj}]", f"frame key {f!r} is not an integer") from exc
        if not 0 <= fi < n:
            raise InputError(f"frame_masks[{obj}]", f"frame {fi} is out of range: the video has {n} frames")
        if m is None:
            out[fi] = None
            continue
        b = as_binary_mask(m, size, source=f"frame_masks[{obj}][{fi}]")
        out[fi] = b if b.any() else None
    if not out:
        raise InputError(f"frame_masks[{obj}]", "no frames given")
    if all(v is None for v in out.values()):
        raise InputError(f"frame_masks[{obj}]", "the object has no non-empty mask on any frame")
    return out


def _keyframes_from_given(
    given: list[dict[int, np.ndarray | None]], n: int, k: int, strategy: str, fps: float, per_second: float
) -> list[int]:
    """Keyframes among the annotated frames (those with an entry for some object).

    ``uniform`` / ``videorefer`` / ``fps`` pick frames over the whole clip and take the nearest
    annotated frame for each (earlier on a tie), filling up uniformly from the remaining annotated
    frames if two picks meet; ``visible`` picks among the annotated frames by visibility.
    """
    cands = sorted(set().union(*(set(fm) for fm in given)))
    if strategy == "visible":
        vis = np.array([[fm.get(f) is not None for fm in given] for f in cands], dtype=bool)
        return [cands[i] for i in select_keyframes(len(cands), k, "visible", visible=vis)]
    picks = select_keyframes(n, k, strategy, fps=fps or None, per_second=per_second)
    arr = np.array(cands)
    chosen = sorted({int(arr[np.argmin(np.abs(arr - p))]) for p in picks})
    want = min(k if strategy != "fps" else len(picks), len(cands))
    if len(chosen) < want:
        rest = [f for f in cands if f not in set(chosen)]
        from garvideo.keyframes import segment_midpoints

        chosen = sorted(set(chosen) | {rest[i] for i in segment_midpoints(len(rest), want - len(chosen))})
    return chosen
