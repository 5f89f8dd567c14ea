"""Prompts from the command line (and batch JSONL): masks, clicked points and boxes, in one order.

Object order (the ``<object0>``, ``<object1>``, … of questions, ids 1, 2, … of id maps and palette
PNGs): first the objects of the mask files, in ``--mask`` order (a file with several ids gives
several objects, in id order), then one object per ``--points`` in the order given, then one per
``--box`` in the order given.

Text forms (pixel coordinates on the prompt frame, origin top left):

* points: ``"x,y[,label];x,y[,label]…"``, label 1 (positive, the default) or 0 (negative);
* box: ``"x0,y0,x1,y1"`` with ``x1 > x0`` and ``y1 > y0``.

Points and boxes go to SAM 2 as point/box prompts (a box is SAM's two corner points labelled 2 and 3);
the other trackers take masks only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from garvideo.errors import InputError
from garvideo.trackers.base import Prompt, Tracker, VideoLike
from garvideo.trackers.names import HOW_TO_GET_SAM2, PROMPTABLE_TRACKERS


def parse_points(text: str | Sequence[Any], source: str = "points") -> tuple[np.ndarray, np.ndarray]:
    """Parse one object's clicks: ``"x,y[,label];…"`` or a list of ``[x, y]`` / ``[x, y, label]``.

    Returns:
        ``(points (N, 2) float64 (x, y), labels (N,) int64)``.

    Raises:
        InputError: malformed text, a label other than 0/1, no positive point.
    """
    if isinstance(text, str):
        items: list[Any] = [p.strip() for p in text.split(";") if p.strip()]
        rows = []
        for item in items:
            parts = [v.strip() for v in item.split(",")]
            try:
                rows.append([float(v) for v in parts])
            except ValueError:
                raise InputError(source, f"point {item!r} is not x,y[,label] numbers") from None
    elif isinstance(text, Sequence):
        rows = []
        for item in text:
            if not isinstance(item, Sequence) or isinstance(item, str):
                raise InputError(source, f"point {item!r} is not [x, y] or [x, y, label]")
            try:
                rows.append([float(v) for v in item])
            except (TypeError, ValueError):
                raise InputError(source, f"point {item!r} is not [x, y] or [x, y, label] numbers") from None
    else:
        raise InputError(
            source, f"points must be a string 'x,y[,label];…' or a list, got {type(text).__name__}"
        )
    if not rows:
        raise InputError(source, "no point given (expected 'x,y[,label];x,y[,label]')")
    pts, labels = [], []
    for row in rows:
        if len(row) not in (2, 3):
            raise InputError(source, f"point {row} must have 2 or 3 values: x,y[,label]")
        label = 1 if len(row) == 2 else row[2]
        if label not in (0.0, 1.0):
            raise InputError(source, f"point label must be 1 (positive) or 0 (negative), got {label:g}")
        if not all(np.isfinite(row[:2])):
            raise InputError(source, f"point {row} is not finite")
        pts.append(row[:2])
        labels.append(int(label))
    if not any(labels):
        raise InputError(source, "give at least one positive point (label 1)")
    return np.asarray(pts, dtype=np.float64), np.asarray(labels, dtype=np.int64)


def parse_box(text: str | Sequence[Any], source: str = "box") -> tuple[float, float, float, float]:
    """Parse one object's box: ``"x0,y0,x1,y1"`` or ``[x0, y0, x1, y1]`` (pixels).

    Raises:
        InputError: not four numbers, or an empty box.
    """
    try:
        vals = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        raise InputError(source, f"box {text!r} is not x0,y0,x1,y1 numbers") from None
    if len(vals) != 4 or not all(np.isfinite(vals)):
        raise InputError(source, f"box {text!r} must be four numbers x0,y0,x1,y1")
    x0, y0, x1, y1 = vals
    if not (x1 > x0 and y1 > y0):
        raise InputError(source, f"box {text!r} is empty (need x1 > x0 and y1 > y0)")
    return (x0, y0, x1, y1)


def build_prompts(
    masks: Sequence[np.ndarray],
    points: Sequence[str | Sequence[Any]] = (),
    boxes: Sequence[str | Sequence[Any]] = (),
    frame: int = 0,
) -> list[Prompt]:
    """One :class:`Prompt` per object on ``frame``, ids 1, 2, … in the module's object order (masks,
    then points, then boxes)."""
    prompts = [Prompt(obj_id=i, frame=frame, mask=np.asarray(m, dtype=bool)) for i, m in enumerate(masks, 1)]
    for j, text in enumerate(points):
        with _numbered("points", j):
            pts, labels = parse_points(text)
        prompts.append(Prompt(obj_id=len(prompts) + 1, frame=frame, points=pts, labels=labels))
    for j, text in enumerate(boxes):
        with _numbered("box", j):
            box = parse_box(text)
        prompts.append(Prompt(obj_id=len(prompts) + 1, frame=frame, box=box))
    return prompts


@contextmanager
def _numbered(field: str, j: int) -> Iterator[None]:
    """Say which of several ``field`` entries (the ``j``-th, from 0) an error of the block is in."""
    try:
        yield
    except InputError as exc:
        raise InputError(field, f"#{j + 1}: {exc.problem}") from None


def needs_sam2(prompts: Sequence[Prompt]) -> bool:
    """Whether some prompt is points or a box (which only SAM 2 takes)."""
    return any(p.kind != "mask" for p in prompts)


def require_sam2(tracker: Tracker, prompts: Sequence[Prompt], source: str = "points/box") -> None:
    """Fail with how to get SAM 2 when point/box prompts meet a tracker that takes masks only.

    Raises:
        InputError: points or boxes given and ``tracker`` is not ``sam2``, ``sam3`` or ``edgetam``.
    """
    if needs_sam2(prompts) and tracker.name not in PROMPTABLE_TRACKERS:
        why = f" ({tracker.selection})" if tracker.selection else ""
        how = "" if HOW_TO_GET_SAM2 in why else f"; {HOW_TO_GET_SAM2}"
        raise InputError(
            source,
            f"point and box prompts need SAM 2 but the tracker is {tracker.name}{why}{how}; or give masks instead",
        )


def masks_from_prompts(tracker: Tracker, video: VideoLike, prompts: Sequence[Prompt]) -> list[np.ndarray]:
    """Each object's mask on its prompt frame: mask prompts as given, points and boxes segmented by
    SAM 2 on that frame alone (one pass over the prompt frame; nothing else is decoded).

    Used where the rest of the work takes masks (``describe``/``ask`` track from them).

    Raises:
        InputError: points or boxes without a SAM 2 tracker, or SAM 2 finding nothing for one.
    """
    require_sam2(tracker, prompts)
    out: list[np.ndarray | None] = [
        np.asarray(p.mask, dtype=bool) if p.kind == "mask" else None for p in prompts
    ]
    todo = [(i, p) for i, p in enumerate(prompts) if p.kind != "mask"]
    for fr in sorted({p.frame for _, p in todo}):
        here = [(i, p) for i, p in todo if p.frame == fr]
        result = tracker.track(video, [p for _, p in here], frames=[fr])
        for i, p in here:
            m = result.mask(fr, p.obj_id)
            if not m.any():
                raise InputError(
                    f"{p.kind} prompt of object{p.obj_id - 1}",
                    f"SAM 2 found no object there on frame {fr}; move the point(s) or the box",
                )
            out[i] = m
    return [m for m in out if m is not None]
