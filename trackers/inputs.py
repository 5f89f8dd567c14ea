"""What :meth:`garvideo.trackers.Tracker.track` accepts from Python (a clip path or a video; a Prompt,
masks, an (N, H, W) stack or mask files), turned into what the trackers need: one function,
:func:`coerce_track_inputs`, or an :class:`~garvideo.errors.InputError` that says what to pass."""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from garvideo.errors import InputError
from garvideo.masks import load_mask
from garvideo.trackers.types import Prompt, VideoLike
from garvideo.video import Video, open_video

_PROMPTS_HELP = (
    "pass a Prompt, a list of Prompts, an (H, W) mask, a list of (H, W) masks (e.g. load_mask(path)), "
    "an (N, H, W) stack, or a mask file path (masks without a Prompt are on frame 0)"
)


@runtime_checkable
class _ArrayLike(Protocol):
    """An array NumPy can read that says its shape (e.g. a torch tensor on the CPU)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __array__(self) -> np.ndarray: ...


class _OwnedVideo:
    """A clip :func:`coerce_track_inputs` opened from a path: closed when the tracker drops it (the end
    of :meth:`Tracker.track`), so passing a path leaks no decoder."""

    def __init__(self, video: Video) -> None:
        self._video = video
        weakref.finalize(self, video.close)  # also run at exit, while the interpreter still works

    @property
    def num_frames(self) -> int:
        return int(self._video.num_frames)

    @property
    def height(self) -> int:
        return int(self._video.height)

    @property
    def width(self) -> int:
        return int(self._video.width)

    def frames(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        return self._video.frames(indices)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_video"], name)


def _as_video(video: Any) -> VideoLike:
    if isinstance(video, (str, os.PathLike)):
        return _OwnedVideo(open_video(Path(video)))
    if isinstance(video, VideoLike):  # runtime_checkable: num_frames, height, width, frames()
        return video
    raise InputError(
        "video",
        f"expected a clip: a video file or frame folder path, or an opened garvideo.video.Video "
        f"(open_video(path)); got {type(video).__name__}",
    )


def _one_object_mask(mask: Any, where: str) -> np.ndarray:
    """``mask`` as one ``(H, W)`` mask: a ``(1, H, W)`` stack or a one-mask list is taken as its mask."""
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim == 3:
        raise InputError(
            where,
            f"its mask is a stack of {m.shape[0]} masks {tuple(m.shape)}; a Prompt holds one object's "
            "(H, W) mask: give one Prompt per object, or pass the masks themselves "
            "(tracker.track(video, load_mask(path)))",
        )
    if m.ndim != 2:
        raise InputError(where, f"its mask has shape {tuple(m.shape)}; expected (H, W)")
    return m


def _masks_of(value: Any) -> list[np.ndarray] | None:
    """The (H, W) masks ``value`` holds when it is masks (an array, a path), else ``None``."""
    if isinstance(value, (str, os.PathLike)):
        return load_mask(Path(value))
    if isinstance(value, (np.ndarray, _ArrayLike)):
        m = np.asarray(value)
        if m.ndim == 2:
            return [m]
        if m.ndim == 3:
            return list(m)
        raise InputError("prompts", f"a mask array of shape {tuple(m.shape)}; {_PROMPTS_HELP}")
    return None


def coerce_track_inputs(video: Any, prompts: Any) -> tuple[VideoLike, list[Prompt]]:
    """What :meth:`Tracker.track` gets from Python, as it needs it: the one place this is done.

    ``video``: an opened clip as is, or a path (a video file or a frame folder), opened here and closed
    when the tracker is done with it. ``prompts``: :class:`Prompt` objects as given (a mask stored as
    a ``(1, H, W)`` stack, e.g. ``load_mask(path)``, is taken as its one mask); or masks — an
    ``(H, W)`` array, a list of them, an ``(N, H, W)`` stack, a mask file path or a list of those —
    which become objects 1, 2, … in that order, on frame 0.

    Raises:
        InputError: something else, saying what to pass (a Prompt with several masks, a mix of
            Prompts and masks, an object of another type, a path that is not a clip).
    """
    if isinstance(prompts, Prompt):
        items: list[Any] = [prompts]
    elif isinstance(prompts, (str, os.PathLike)) or hasattr(prompts, "shape"):
        items = [prompts]
    elif isinstance(prompts, Sequence):
        items = list(prompts)
    else:
        raise InputError("prompts", f"got {type(prompts).__name__}; {_PROMPTS_HELP}")
    given = [it for it in items if isinstance(it, Prompt)]
    if given and len(given) != len(items):
        raise InputError("prompts", f"a mix of Prompts and masks; give one kind ({_PROMPTS_HELP})")
    out: list[Prompt] = []
    if given:
        for p in given:
            if p.mask is not None and (not isinstance(p.mask, np.ndarray) or p.mask.ndim != 2):
                p = dataclasses.replace(p, mask=_one_object_mask(p.mask, f"prompt of object {p.obj_id}"))
            out.append(p)
    else:
        for k, it in enumerate(items):
            masks = _masks_of(it)
            if masks is None:
                raise InputError("prompts", f"item {k} is a {type(it).__name__}; {_PROMPTS_HELP}")
            out += [Prompt(obj_id=len(out) + j, frame=0, mask=m) for j, m in enumerate(masks, 1)]
    return _as_video(video), out
