"""The tracker interface: prompts in, a per-frame, per-object mask out.

Every backend (``static``, ``flow``, ``sam2``) subclasses :class:`Tracker` and implements one
method, :meth:`Tracker._open_session`, which returns a :class:`Session`: an object that is fed the
frames of one propagation pass in order (forward or backward) and returns the masks of the objects
it tracks (and may override :meth:`Tracker._visits_every_frame`). :meth:`Tracker.track` does everything else, once for all backends:

* checks the prompts against the video (sizes, frame range, empty masks),
* works out which frames to visit and which to keep (``frames=``, ``start``/``end``/``stride``),
* runs a forward pass from the earliest prompt frame to the last frame wanted and a backward pass
  from the latest prompt frame down to the first frame wanted, streaming frames from the reader,
* for a frame that both passes reach (it lies between two prompt frames), keeps the estimate of
  the pass whose prompt is nearer in time (backends may plan the passes and pick the estimate
  otherwise: :meth:`Tracker._plan_passes`, :meth:`Tracker._later_pass_wins`),
* stores only the kept frames, run-length encoded, so a long clip stays small in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from garvideo.errors import InputError
from garvideo.masks import masks_to_id_map
from garvideo.trackers.inputs import coerce_track_inputs
from garvideo.trackers.threads import scoped_threads
from garvideo.trackers.types import Prompt, VideoLike

logger = logging.getLogger(__name__)

# Frames decoded at once when a pass runs backward (the reader streams forward; a chunk is read
# forward and replayed in reverse): bounds the frame window held in memory.
BACKWARD_CHUNK = 16


@dataclass(frozen=True)
class _Runs:
    """A bool mask stored as run lengths of its row-major flattening (compact for object masks)."""

    first: bool  # value of the first run
    ends: np.ndarray  # (R,) uint32 exclusive end of each run; ends[-1] == H * W
    area: int

    @classmethod
    def encode(cls, mask: np.ndarray) -> _Runs:
        flat = np.ascontiguousarray(mask, dtype=bool).ravel()
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        ends = np.append(change, flat.size).astype(np.uint32)
        return cls(bool(flat[0]) if flat.size else False, ends, int(np.count_nonzero(flat)))

    def decode(self, shape: tuple[int, int]) -> np.ndarray:
        lengths = np.diff(self.ends, prepend=np.uint32(0))
        values = np.zeros(len(lengths), dtype=bool)
        values[0 if self.first else 1 :: 2] = True
        return np.repeat(values, lengths).reshape(shape)


@dataclass
class TrackResult:
    """Masks of every tracked object on every kept frame.

    Masks are stored run-length encoded and decoded on access, so a result over thousands of
    frames stays a few MB. Use the accessors rather than ``_store``.

    Attributes:
        tracker: name of the backend that produced it (``"sam2"``, ``"flow"``, ``"static"``).
        height, width: frame size.
        object_ids: ids of the tracked objects, in prompt order.
        timings: seconds spent, by phase (``"total"``, ``"decode"``, ``"track"``), plus
            ``"frames_per_second"`` over the frames visited.
        frames_visited: how many frames were decoded and propagated through.
        info: backend details (e.g. sam2 config and image size).
        reason: which backend ran and why (``Tracker.selection``: e.g. ``"auto: flow (...): offline
            (HF_HUB_OFFLINE) ..."``); shown by every command that tracks.
    """

    tracker: str
    height: int
    width: int
    object_ids: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    frames_visited: int = 0
    info: dict[str, object] = field(default_factory=dict)
    reason: str = ""
    _store: dict[int, dict[int, tuple[_Runs, float]]] = field(default_factory=dict, repr=False)

    # -- building ----------------------------------------------------------------------------
    def _put(self, frame: int, obj_id: int, mask: np.ndarray, score: float) -> None:
        self._store.setdefault(frame, {})[obj_id] = (_Runs.encode(mask), float(score))

    # -- access ------------------------------------------------------------------------------
    @property
    def frames(self) -> list[int]:
        """The kept frame indices, ascending."""
        return sorted(self._store)

    def _entry(self, frame: int, obj_id: int) -> tuple[_Runs, float] | None:
        if frame not in self._store:
            raise KeyError(f"frame {frame} is not in the result (kept frames: {self._describe_frames()})")
        if obj_id not in self.object_ids:
            raise KeyError(f"object {obj_id} is not tracked (objects: {self.object_ids})")
        return self._store[frame].get(obj_id)

    def _describe_frames(self) -> str:
        fr = self.frames
        return "none" if not fr else f"{len(fr)} frames, {fr[0]}..{fr[-1]}"

    def mask(self, frame: int, obj_id: int) -> np.ndarray:
        """(H, W) bool mask of ``obj_id`` on ``frame`` (all False when the object is absent)."""
        entry = self._entry(frame, obj_id)
        if entry is None:
            return np.zeros((self.height, self.width), dtype=bool)
        return entry[0].decode((self.height, self.width))

    def score(self, frame: int, obj_id: int) -> float:
        """Presence score in [0, 1] of ``obj_id`` on ``frame`` (0 where it was not tracked)."""
        entry = self._entry(frame, obj_id)
        return 0.0 if entry is None else entry[1]

    def present(self, frame: int, obj_id: int) -> bool:
        """Whether ``obj_id`` is visible on ``frame`` (presence score above 0.5, mask not empty)."""
        entry = self._entry(frame, obj_id)
        return entry is not None and entry[1] > 0.5 and entry[0].area > 0

    def tracked(self, frame: int, obj_id: int) -> bool:
        """Whether the tracker produced an estimate for ``obj_id`` on ``frame`` (the object had been
        started by a prompt in the direction of the pass that reached the frame)."""
        return self._entry(frame, obj_id) is not None

    def area(self, frame: int, obj_id: int) -> int:
        """Mask area in pixels (cheap: no decoding)."""
        entry = self._entry(frame, obj_id)
        return 0 if entry is None else entry[0].area

    def masks(self, frame: int) -> dict[int, np.ndarray]:
        """All objects' masks on ``frame``, by object id."""
        return {o: self.mask(frame, o) for o in self.object_ids}

    def id_map(self, frame: int) -> np.ndarray:
        """(H, W) uint8 map: pixel = object id, 0 = background; later objects drawn over earlier."""
        return masks_to_id_map([self.mask(frame, o) for o in self.object_ids], self.object_ids)

    def visible_frames(self, obj_id: int) -> list[int]:
        """Kept frames on which ``obj_id`` is present."""
        return [f for f in self.frames if self.present(f, obj_id)]

    def summary(self) -> dict[str, object]:
        """A JSON-ready summary: tracker, frames, per-object visible frames, timings."""
        return {
            "tracker": self.tracker,
            "tracker_reason": self.reason,
            "frames": len(self.frames),
            "first_frame": self.frames[0] if self.frames else None,
            "last_frame": self.frames[-1] if self.frames else None,
            "frames_visited": self.frames_visited,
            # objectK is the K-th prompt (id K+1), as <objectK> in questions and value K+1 in id maps.
            "objects": {
                f"object{k}": {"id": o, "visible_frames": len(self.visible_frames(o))}
                for k, o in enumerate(self.object_ids)
            },
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "info": self.info,
        }


class Session(Protocol):
    """One propagation pass of a backend over frames given in order (forward or backward)."""

    def step(
        self, frame_idx: int, image: np.ndarray, prompts: Sequence[Prompt]
    ) -> dict[int, tuple[np.ndarray, float]]:
        """Consume the next frame and return ``{obj_id: ((H, W) bool mask, presence score)}``.

        ``image`` is (H, W, 3) uint8 RGB; ``prompts`` are the prompts on this frame (they start or
        re-anchor their objects). Objects not started yet are left out of the result.
        """
        ...

    def close(self) -> None:
        """Free what the pass holds (models stay loaded on the tracker)."""
        ...


ProgressFn = Callable[[int, int], None]


class Tracker:
    """Base class of the mask propagation backends. Subclasses set ``name`` and implement
    :meth:`_open_session` (and :meth:`_check_prompt` when they accept more than masks)."""

    name: str = "base"
    #: Why this backend was chosen (set by ``build_tracker("auto")``; recorded in ``TrackResult.info``).
    selection: str | None = None
    #: CPU thread count while :meth:`track` runs (``None``: leave the library's setting), set for the
    #: work only and restored after it (:func:`~garvideo.trackers.threads.scoped_threads`).
    threads: int | None = None
    #: Which library's thread count ``threads`` sets: ``"torch"`` or ``"opencv"``.
    thread_library: str = "torch"

    def track(
        self,
        video: VideoLike,
        prompts: Sequence[Prompt],
        *,
        frames: Sequence[int] | None = None,
        start: int | None = None,
        end: int | None = None,
        stride: int = 1,
        progress: ProgressFn | None = None,
    ) -> TrackResult:
        """Propagate the prompts through ``video``, both ways from the prompt frame(s).

        Args:
            video: the clip (:func:`garvideo.video.open_video`); frames are streamed from it.
            prompts: one or more prompts; several objects, and several frames per object, allowed.
            frames: the frame indices to keep in the result (e.g. keyframes). The tracker still
                runs through the frames in between (flow needs consecutive frames; sam2 too unless
                built with ``every_frame=False``) but keeps only these. Exclusive with
                ``start``/``end``/``stride``.
            start, end, stride: keep ``range(start, end, stride)`` (defaults: whole clip, every
                frame). ``end`` is exclusive.
            progress: called as ``progress(done, total)`` after each frame visited.

        Returns:
            a :class:`TrackResult`.

        Raises:
            InputError: no prompts, a prompt frame out of range, a mask of the wrong size or empty,
                a prompt kind the backend does not take, a bad frame selection.
        """
        with scoped_threads(self.threads, self.thread_library):
            return self._track(
                video, prompts, frames=frames, start=start, end=end, stride=stride, progress=progress
            )

    def _track(
        self,
        video: VideoLike,
        prompts: Sequence[Prompt],
        *,
        frames: Sequence[int] | None,
        start: int | None,
        end: int | None,
        stride: int,
        progress: ProgressFn | None,
    ) -> TrackResult:

        video, prompts = coerce_track_inputs(video, prompts)
        t_total = time.perf_counter()
        n = int(video.num_frames)
        h, w = int(video.height), int(video.width)
        prompts = list(prompts)
        if not prompts:
            raise InputError("prompts", "at least one prompt is needed")
        for p in prompts:
            self._check_prompt_common(p, n, h, w)
            self._check_prompt(p)
        keep = _frames_to_keep(n, frames, start, end, stride)
        seen: set[tuple[int, int]] = set()
        for p in prompts:
            if (p.obj_id, p.frame) in seen:
                raise InputError(f"prompt of object {p.obj_id}", f"two prompts on frame {p.frame}; give one")
            seen.add((p.obj_id, p.frame))
        obj_ids = list(dict.fromkeys(p.obj_id for p in prompts))
        by_frame: dict[int, list[Prompt]] = {}
        for p in prompts:
            by_frame.setdefault(p.frame, []).append(p)
        keep_set = set(keep)

        fwd, bwd = self._plan_passes(n, by_frame, keep)
        later_wins = self._later_pass_wins()
        total = len(fwd) + len(bwd)
        result = TrackResult(tracker=self.name, height=h, width=w, object_ids=obj_ids)
        # best[(frame, obj)] = distance in frames to the prompt the stored estimate comes from.
        best: dict[tuple[int, int], int] = {}
        decode_s = 0.0
        track_s = 0.0
        done = 0
        for direction, order in (("forward", fwd), ("backward", bwd)):
            if not order:
                continue
            session = self._open_session(video, direction, order)
            last_prompt: dict[int, int] = {}
            try:
                t_dec = time.perf_counter()
                for fi, image in iter_frames(video, order):
                    t0 = time.perf_counter()
                    decode_s += t0 - t_dec
                    here = by_frame.get(fi, [])
                    for p in here:
                        last_prompt[p.obj_id] = fi
                    out = session.step(fi, image, here)
                    if fi in keep_set:
                        for oid, (m, s) in out.items():
                            dist = abs(fi - last_prompt.get(oid, fi))
                            prev = best.get((fi, oid))
                            if prev is None or dist < prev or later_wins:
                                best[(fi, oid)] = dist
                                result._put(fi, oid, m, s)
                    track_s += time.perf_counter() - t0
                    done += 1
                    if progress is not None:
                        progress(done, total)
                    t_dec = time.perf_counter()
            finally:
                session.close()
        # Every kept frame is listed, even where no object had started yet.
        for fi in keep:
            result._store.setdefault(fi, {})
        result._store = {f: result._store[f] for f in sorted(result._store) if f in keep_set}
        total_s = time.perf_counter() - t_total
        result.frames_visited = done
        result.timings = {
            "total": total_s,
            "decode": decode_s,
            "track": track_s,
            "frames_per_second": done / total_s if total_s > 0 else 0.0,
        }
        result.info.update(self.describe())
        if self.selection:
            result.info["selection"] = self.selection
        result.reason = self.selection or self.name
        return result

    # -- to override ---------------------------------------------------------------------------
    def _open_session(self, video: VideoLike, direction: str, order: Sequence[int]) -> Session:
        """A new pass over ``order`` (frame indices in visit order, ascending or descending)."""
        raise NotImplementedError

    def _plan_passes(
        self, n: int, by_frame: dict[int, list[Prompt]], keep: Sequence[int]
    ) -> tuple[list[int], list[int]]:
        """The frames of the forward and the backward pass, in visit order.

        Default: the forward pass covers [first prompt, last kept], the backward one
        [first kept, last prompt]; a pass that would only visit the prompt frame the other pass
        starts from is dropped. Backends that follow another reference (sam2) override it.
        """
        pframes = sorted(by_frame)
        fwd = list(range(pframes[0], max(keep[-1], pframes[0]) + 1)) if keep[-1] >= pframes[0] else []
        bwd = list(range(pframes[-1], min(keep[0], pframes[-1]) - 1, -1)) if keep[0] <= pframes[-1] else []
        if not self._visits_every_frame():
            wanted = set(keep) | set(pframes)
            fwd = [f for f in fwd if f in wanted]
            bwd = [f for f in bwd if f in wanted]
        # A pass that would only visit the prompt frame the other pass starts from adds nothing.
        if len(bwd) == 1 and fwd and bwd[0] == fwd[0]:
            bwd = []
        if len(fwd) == 1 and bwd and fwd[0] == bwd[0]:
            fwd = []
        return fwd, bwd

    def _later_pass_wins(self) -> bool:
        """For a frame both passes reach: ``False`` keeps the estimate of the pass whose prompt is
        nearer in time (the default); ``True`` keeps the backward pass's (the last written), as a
        user of SAM 2's predictor who stores both passes' outputs in one dict gets."""
        return False

    def _visits_every_frame(self) -> bool:
        """Whether a pass visits every frame between the prompt and the kept frames (True: flow
        needs consecutive frames) or only the kept and prompt frames."""
        return True

    def _check_prompt(self, prompt: Prompt) -> None:
        """Backend-specific prompt checks; the default accepts masks only."""
        if prompt.kind != "mask":
            raise InputError(
                f"prompt of object {prompt.obj_id}",
                f"the {self.name} tracker takes mask prompts only, not {prompt.kind} (use the sam2 tracker)",
            )

    def describe(self) -> dict[str, object]:
        """Backend details recorded in :attr:`TrackResult.info`."""
        return {}

    # -- shared checks -------------------------------------------------------------------------
    @staticmethod
    def _check_prompt_common(p: Prompt, n: int, h: int, w: int) -> None:
        src = f"prompt of object {p.obj_id}"
        if not isinstance(p.obj_id, (int, np.integer)) or p.obj_id < 1 or p.obj_id > 255:
            raise InputError(src, f"object id must be an integer in 1..255, got {p.obj_id!r}")
        if not 0 <= p.frame < n:
            raise InputError(
                src, f"prompt frame {p.frame} is out of range: the video has {n} frames (0..{n - 1})"
            )
        given = sum(x is not None for x in (p.mask, p.points, p.box))
        if given != 1:
            raise InputError(src, "give exactly one of mask, points or box")
        if p.mask is not None:
            m = np.asarray(p.mask)
            if m.ndim != 2:
                raise InputError(src, f"mask must be 2-D (H, W), got shape {m.shape}")
            if m.shape != (h, w):
                raise InputError(
                    src,
                    f"mask size {m.shape[1]}x{m.shape[0]} differs from the video's {w}x{h} (width x height)",
                )
            if not m.any():
                raise InputError(src, f"mask on frame {p.frame} is empty")
        if p.points is not None:
            pts = np.asarray(p.points, dtype=np.float64)
            if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
                raise InputError(src, f"points must have shape (N, 2), got {pts.shape}")
            lab = None if p.labels is None else np.asarray(p.labels)
            if lab is None or lab.shape != (len(pts),):
                raise InputError(src, "labels must be given, one per point (1 positive, 0 negative)")
            if not np.isin(lab, (0, 1)).all():
                raise InputError(src, "labels must be 1 (positive) or 0 (negative)")
            if (
                (pts[:, 0] < 0).any()
                or (pts[:, 0] >= w).any()
                or (pts[:, 1] < 0).any()
                or (pts[:, 1] >= h).any()
            ):
                raise InputError(src, f"a point lies outside the {w}x{h} frame")
        if p.box is not None:
            if len(p.box) != 4:
                raise InputError(src, "box must be (x0, y0, x1, y1)")
            x0, y0, x1, y1 = (float(v) for v in p.box)
            if not (x1 > x0 and y1 > y0):
                raise InputError(src, f"box {p.box} is empty (need x1 > x0 and y1 > y0)")


def _frames_to_keep(
    n: int, frames: Sequence[int] | None, start: int | None, end: int | None, stride: int
) -> list[int]:
    if frames is not None:
        if start is not None or end is not None or stride != 1:
            raise InputError("frames", "give either frames or start/end/stride, not both")
        keep = sorted({int(f) for f in frames})
        if not keep:
            raise InputError("frames", "no frames requested")
        bad = [f for f in keep if not 0 <= f < n]
        if bad:
            raise InputError("frames", f"frame {bad[0]} is out of range: the video has {n} frames")
        return keep
    if stride < 1:
        raise InputError("stride", f"must be at least 1, got {stride}")
    s = 0 if start is None else int(start)
    e = n if end is None else int(end)
    if not 0 <= s < n:
        raise InputError("start", f"{s} is out of range: the video has {n} frames")
    if not s < e <= n:
        raise InputError("end", f"{e} must be in {s + 1}..{n}")
    return list(range(s, e, stride))


def iter_frames(video: VideoLike, order: Sequence[int]) -> Iterable[tuple[int, np.ndarray]]:
    """Yield ``(index, (H, W, 3) uint8 RGB)`` in the given order (ascending or descending).

    The reader streams forward; a descending order is read in forward chunks of
    :data:`BACKWARD_CHUNK` frames replayed in reverse, so at most one chunk is held in memory.
    """
    if len(order) < 2 or order[1] > order[0]:
        yield from video.frames(list(order))
        return
    i = 0
    while i < len(order):
        chunk = list(order[i : i + BACKWARD_CHUNK])  # descending
        decoded = list(video.frames(chunk[::-1]))
        yield from reversed(decoded)
        del decoded
        i += BACKWARD_CHUNK
