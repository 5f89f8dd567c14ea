"""The two types every tracker module shares: :class:`VideoLike` (what a tracker reads) and
:class:`Prompt` (one object's prompt on one frame). Kept apart from :mod:`garvideo.trackers.base` so that
:mod:`garvideo.trackers.inputs` can use them and :mod:`~garvideo.trackers.base` can use it, one way."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VideoLike(Protocol):
    """What a tracker needs from :class:`garvideo.video.Video`."""

    @property
    def num_frames(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def width(self) -> int: ...

    def frames(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]: ...


@dataclass(frozen=True)
class Prompt:
    """One object's prompt on one frame.

    Exactly one of ``mask``, ``points`` (with ``labels``) or ``box`` is given; points and boxes are
    understood by the ``sam2`` backend only.

    Args:
        obj_id: the object's id (a positive integer; 0 is the background in id maps).
        frame: index of the prompted frame in the clip (counted from 0).
        mask: (H, W) bool (or 0/1) mask of the object on that frame, H and W the video's size.
        points: (N, 2) float pixel coordinates ``(x, y)``.
        labels: (N,) int, 1 for a positive click, 0 for a negative one.
        box: ``(x0, y0, x1, y1)`` in pixels.
    """

    obj_id: int
    frame: int
    mask: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None

    @property
    def kind(self) -> str:
        """``"mask"``, ``"points"`` or ``"box"``."""
        if self.mask is not None:
            return "mask"
        if self.points is not None:
            return "points"
        return "box"
