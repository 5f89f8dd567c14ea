"""Clip preparation: open the video, track the objects, choose the keyframes -> :class:`PreparedClip`.

The budget rule (:class:`~garvideo.pipeline.budget.TokenBudget`) may reduce K here; encoding the keyframes
is :func:`~garvideo.pipeline.encoding.encode_clip`, called at the end when an ``encoder`` is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from garvideo.errors import InputError, PathLike
from garvideo.keyframes import segment_midpoints, select_keyframes
from garvideo.model.prompts import MAX_REGIONS, prompt_indices, prompt_token
from garvideo.pipeline.budget import TokenBudget, frame_cost
from garvideo.pipeline.encoding import encode_clip
from garvideo.pipeline.prepared import FrameMasks, ObjectInfo, PreparedClip
from garvideo.pipeline.settings import PipelineSettings
from garvideo.trackers.base import ProgressFn, Tracker, TrackResult
from garvideo.trackers.types import Prompt, VideoLike
from garvideo.video import open_video

if TYPE_CHECKING:
    from garvideo.model import GarBundle

__all__ = ["FrameMasks", "ObjectInfo", "PreparedClip", "TrackerSource", "prepare_clip", "track_keyframes"]

logger = logging.getLogger(__name__)

#: The tracker, or a function that builds it when tracking is first needed (masks given on one frame).
TrackerSource = Tracker | Callable[[], Tracker]


def prepare_clip(
    video: PathLike | VideoLike,
    masks: np.ndarray | Sequence[np.ndarray] | None = None,
    frame: int = 0,
    frame_masks: Sequence[FrameMasks] | None = None,
    *,
    settings: PipelineSettings,
    budget: TokenBudget,
    tracker: TrackerSource | None = None,
    encoder: GarBundle | None = None,
    track_all_frames: bool = False,
    progress: ProgressFn | None = None,
) -> PreparedClip:
    """Track the objects, choose the keyframes and (with ``encoder``) encode them.

    Args:
        video: a path (file or frame folder) or an open video (:class:`garvideo.video.Video`; not closed here).
        masks: the objects' bool ``(H, W)`` masks on ``frame`` (one array or a list of 1 to 5), tracked
            through the clip. Exclusive with ``frame_masks``.
        frame: the frame ``masks`` belong to.
        frame_masks: per object, ``{frame index: (H, W) bool mask or None}`` used as given; keyframes are
            then chosen among the annotated frames.
        settings: K, keyframe strategy, prompt frame, fps, RoI mode and the new tokens the budget reserves.
        budget: the context K must fit (:meth:`TokenBudget.max_keyframes`).
        tracker: the tracker, or a function building it; needed (and called) only for ``masks``.
        encoder: the model to encode the keyframes with now; ``None``: only track and pick keyframes.
        track_all_frames: keep the masks of every frame in :attr:`PreparedClip.track` (for an overlay).
        progress: ``progress(done, total)`` while tracking.

    Returns:
        The clip, its video kept open (:meth:`PreparedClip.close` releases it).

    Raises:
        InputError: no or both mask forms, 0 or more than 5 objects, a mask of the wrong size or empty, a
            frame out of range, no keyframe fitting the context, ``masks`` without a tracker.
    """
    t_start = time.perf_counter()
    if (masks is None) == (frame_masks is None):
        raise InputError(
            "masks", "give either masks (on one frame, tracked) or frame_masks (per frame), exactly one"
        )
    vid, owned = _open(video)
    try:
        n, h, w = int(vid.num_frames), int(vid.height), int(vid.width)
        fps = float(getattr(vid, "fps", 0.0) or 0.0)
        notes: list[str] = []
        timings: dict[str, float] = {"decode": 0.0, "tracking": 0.0, "vision": 0.0}

        mask_list: list[Any] = []
        fm_list: list[Any] = []
        if masks is not None:
            mask_list = [masks] if isinstance(masks, np.ndarray) and masks.ndim == 2 else list(masks)
            num_obj = len(mask_list)
        else:
            fm_list = list(frame_masks or [])
            num_obj = len(fm_list)
        if not 1 <= num_obj <= MAX_REGIONS:
            field = "masks" if masks is not None else "frame_masks"
            raise InputError(field, f"expected 1 to {MAX_REGIONS} objects, got {num_obj}")

        # Budget: reduce K (and say so) rather than ever truncating a prompt.
        k = settings.num_frames
        new = settings.max_new_tokens
        k_max = budget.max_keyframes(num_obj, new)
        if k_max < 1:
            raise InputError(
                "max_new_tokens",
                f"not even one keyframe fits the {budget.context_length}-position context with {num_obj} "
                f"object(s) and {new} new tokens",
            )
        if k > k_max:
            notes.append(
                f"reduced the keyframes from {k} to {k_max}: each keyframe costs {frame_cost(num_obj)} tokens "
                f"(256 global + 256 per object, {num_obj} object(s)) and {k} would not fit the model's "
                f"{budget.context_length}-position context with {new} new tokens"
            )
            logger.info(notes[-1])
            k = k_max

        track: TrackResult | None
        if masks is not None:
            checked = [_check_mask(m, (h, w), f"masks[{i}]") for i, m in enumerate(mask_list)]
            if not 0 <= frame < n:
                raise InputError(
                    "frame", f"frame {frame} is out of range: the video has {n} frames (0..{n - 1})"
                )
            if tracker is None:
                raise InputError("tracker", "masks on one frame are tracked: give a tracker")
            tracker_obj = tracker if isinstance(tracker, Tracker) else tracker()
            frames, track, kf_masks = track_keyframes(
                tracker_obj,
                vid,
                checked,
                int(frame),
                k,
                settings,
                fps=fps,
                track_all=track_all_frames,
                progress=progress,
                timings=timings,
            )
            tracker_name = str(track.tracker)
            prompt_frames: list[int | None] = [int(frame)] * num_obj
            # Say which tracker ran and why (e.g. flow because offline), first among the notes.
            notes.insert(0, f"tracker: {track.reason or tracker_name}")
        else:
            given = [_check_frame_masks(fm, n, (h, w), i) for i, fm in enumerate(fm_list)]
            frames = _keyframes_from_given(given, n, k, settings.keyframes, fps, settings.per_second)
            kf_masks = np.zeros((len(frames), num_obj, h, w), dtype=bool)  # (K, O, H, W)
            for t, f in enumerate(frames):
                for o, fm in enumerate(given):
                    m = fm.get(f)
                    if m is not None:
                        kf_masks[t, o] = m
            track, tracker_name = None, "given"
            prompt_frames = [None] * num_obj

        if len(frames) < k:
            notes.append(f"the clip gives {len(frames)} keyframes, fewer than the {k} asked for")
        objects = _objects(kf_masks, frames, prompt_frames, notes)
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
        if encoder is not None:
            encode_clip(encoder, clip, settings.roi_mode)
        clip.timings["prepare"] = time.perf_counter() - t_start
        clip.prepared_at = t_start
        return clip
    except BaseException:
        if owned:
            _close(vid)
        raise


def _objects(
    kf_masks: np.ndarray, frames: Sequence[int], prompt_frames: Sequence[int | None], notes: list[str]
) -> list[ObjectInfo]:
    """Per object, its prompt token, presence and boxes on the keyframes (``kf_masks``: ``(K, O, H, W)``);
    notes for objects absent on some or all keyframes are appended to ``notes``."""
    from garvideo.model.processing import mask_box  # local: transformers (see _check_mask)

    num_obj = kf_masks.shape[1]
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
    return objects


def track_keyframes(
    tracker: Tracker,
    vid: VideoLike,
    masks: list[np.ndarray],
    frame: int,
    k: int,
    settings: PipelineSettings,
    *,
    fps: float,
    track_all: bool = False,
    progress: ProgressFn | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[list[int], TrackResult, np.ndarray]:
    """Track ``masks`` from ``frame`` and pick ``k`` keyframes by ``settings`` (strategy, prompt frame, fps).

    Args:
        tracker: the tracker.
        vid: the open video.
        masks: the objects' checked ``(H, W)`` bool masks on ``frame``.
        frame: the prompt frame.
        k: the keyframes wanted (after the budget).
        settings: the keyframe strategy, ``include_prompt_frame`` and ``per_second``.
        fps: the clip's frame rate (0: unknown).
        track_all: keep every frame in the result (also done for the ``visible`` strategy).
        progress: ``progress(done, total)`` while tracking.
        timings: ``decode`` and ``tracking`` seconds are added to it.

    Returns:
        The keyframes, the track result and the ``(K, O, H, W)`` keyframe masks (the prompt frame's masks
        exactly as given).
    """
    n, h, w = int(vid.num_frames), int(vid.height), int(vid.width)
    strategy = settings.keyframes
    include_frame = frame if settings.include_prompt_frame else None
    obj_ids = list(range(1, len(masks) + 1))
    prompts = [Prompt(obj_id=i, frame=frame, mask=m) for i, m in zip(obj_ids, masks)]
    needs_all = track_all or strategy == "visible"
    frames: list[int] | None = None
    if not needs_all:
        frames = select_keyframes(
            n, k, strategy, include_frame=include_frame, fps=fps or None, per_second=settings.per_second
        )
    result = tracker.track(vid, prompts, frames=None if needs_all else frames, progress=progress)
    if timings is not None:
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
            include_frame=include_frame,
            visible=visible,
            fps=fps or None,
            per_second=settings.per_second,
        )
    kf = np.zeros((len(frames), len(masks), h, w), dtype=bool)  # (K, O, H, W)
    for t, f in enumerate(frames):
        for j, o in enumerate(obj_ids):
            if f == frame:
                kf[t, j] = masks[j]  # the prompt itself, exactly as given
            elif result.present(f, o):
                kf[t, j] = result.mask(f, o)
    return frames, result, kf


def _open(video: PathLike | VideoLike) -> tuple[VideoLike, bool]:
    """An open video and whether we opened it (then we close it on failure)."""
    if isinstance(video, VideoLike):
        return video, False
    return open_video(video), True


def _close(video: VideoLike) -> None:
    close = getattr(video, "close", None)  # a VideoLike need not have close()
    if close is not None:
        close()


def _check_mask(mask: Any, size: tuple[int, int], source: str) -> np.ndarray:
    # Local: garvideo.model.processing imports transformers; `import garvideo.pipeline` stays without it.
    from garvideo.model.processing import as_binary_mask

    m = as_binary_mask(mask, size, source=source)
    if not m.any():
        raise InputError(source, "mask is empty (no pixel set)")
    return m


def _check_frame_masks(fm: Any, n: int, size: tuple[int, int], obj: int) -> dict[int, np.ndarray | None]:
    from garvideo.model.processing import as_binary_mask  # local: transformers (see _check_mask)

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
        chosen = sorted(set(chosen) | {rest[i] for i in segment_midpoints(len(rest), want - len(chosen))})
    return chosen
