"""Batch video QA: answer a JSONL file of region questions with :class:`garvideo.pipeline.GarVideo`.

Input, one JSON object per line::

    {"id": "q1", "video": "clips/dog.mp4", "mask": "masks/dog_00000.png", "frame": 0,
     "question": "What is <object0> doing?", "options": ["running", "sleeping"]}

* ``id`` (string or integer, unique) and ``video`` (a file or a frame folder) and ``question``;
* objects either as ``mask`` — a mask file, or a list of them, each file giving one or more objects
  (see :func:`garvideo.masks.load_mask`) — on frame ``frame`` (default 0), tracked through the clip;
  or as ``masks`` — per object, a map from frame index to a mask file or a COCO RLE (or ``null``:
  absent on that frame), used as given;
* optional ``options``: the option texts, lettered ``A``, ``B``, … in order.

Relative paths are resolved against the questions file's folder (or ``root``).

Output, one line per question (:func:`answer_record`): ``id``, ``answer`` (the option letter for a
multiple-choice question, else the answer text), ``pred`` (the raw model output), ``frames`` (the
keyframes used), ``error`` (``null`` or why the item failed), ``notes``, ``timings`` (seconds).
Runs are resumable and shardable (:mod:`garvideo.jsonl`). Questions on the same clip and masks are
processed one after the other on one prepared clip, so tracking, frame encoding and the prompt
prefix are computed once for all of them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from garvideo.errors import InputError, PathLike
from garvideo.jsonl import JsonlRun, Progress, RunSummary, error_text, read_jsonl, record_key, run_jsonl

logger = logging.getLogger(__name__)

ANSWER_KEYS = ("id", "answer", "pred", "frames", "error", "notes", "timings")
"""The keys of an output line, in order."""


# ----------------------------------------------------------------------------------------------------
# questions
# ----------------------------------------------------------------------------------------------------
MaskSpec = Any  # a mask file path (Path) or a COCO RLE dict, or None (absent)


@dataclass(frozen=True)
class BatchQuestion:
    """One parsed input line.

    Attributes:
        id: the question's id as given (string or int).
        line: its line number in the questions file.
        video: the clip (a file or a frame folder).
        question: the question, objects as ``<object0>``, ``<object1>``, …
        options: the option texts (multiple choice), or ``None``.
        mask_files: the mask files of the ``mask`` form (objects tracked from ``frame``).
        frame: the frame the ``mask`` files belong to.
        frame_masks: the ``masks`` form: per object, ``{frame index: mask file | COCO RLE | None}``.
        points: more objects by clicks on ``frame``, one ``"x,y[,label];…"`` per object (SAM 2).
        boxes: more objects by boxes on ``frame``, one ``(x0, y0, x1, y1)`` per object (SAM 2); objects
            are the ``mask`` files' first, then ``points``, then ``boxes``.
        problem: why the line cannot be answered (recorded as the item's error), else ``None``.
    """

    id: Any
    line: int
    video: Path | None = None
    question: str = ""
    options: tuple[str, ...] | None = None
    mask_files: tuple[Path, ...] | None = None
    frame: int = 0
    frame_masks: tuple[dict[int, MaskSpec], ...] | None = None
    points: tuple[str, ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    problem: str | None = None

    def clip_key(self) -> Hashable:
        """Questions with equal keys share one prepared clip (same video and same masks)."""
        if self.problem is not None:
            return ("problem", record_key(self.id))
        if self.mask_files is not None or self.points or self.boxes:
            files = tuple(map(str, self.mask_files or ()))
            return (str(self.video), "mask", files, self.frame, self.points, self.boxes)
        masks = [
            {k: (str(v) if isinstance(v, Path) else v) for k, v in fm.items()}
            for fm in self.frame_masks or ()
        ]
        return (str(self.video), "masks", json.dumps(masks, sort_keys=True))


def _check_id(value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value):
        raise InputError(where, f"'id' must be a non-empty string or an integer, got {value!r}")
    return value


def _resolve(base: Path, value: Any, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{what}' must be a path string, got {value!r}")
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def parse_question(obj: Mapping[str, Any], *, base: Path, line: int = 0) -> BatchQuestion:
    """Parse one input object; a problem with its fields becomes :attr:`BatchQuestion.problem`.

    Raises:
        InputError: the object has no usable ``id`` (it could not be recorded).
    """
    qid = _check_id(obj.get("id"), f"line {line}")
    try:
        video = _resolve(base, obj.get("video"), "video")
        question = obj.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ValueError("'question' must be a non-empty string")
        options = obj.get("options")
        if options is not None:
            if not isinstance(options, list) or not all(isinstance(o, str) and o.strip() for o in options):
                raise ValueError("'options' must be a list of non-empty strings")
            if not 2 <= len(options) <= 26:
                raise ValueError(f"'options' must have 2 to 26 entries, got {len(options)}")
            options = tuple(options)
        points, boxes = _parse_point_box(obj)
        if "masks" in obj and ("mask" in obj or points or boxes):
            raise ValueError(
                "give either 'mask' / 'points' / 'box' (with 'frame') or 'masks' (per frame), not both"
            )
        if not ("mask" in obj or "masks" in obj or points or boxes):
            raise ValueError("give either 'mask' / 'points' / 'box' (with 'frame') or 'masks' (per frame)")
        frame = obj.get("frame", 0)
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise ValueError(f"'frame' must be a non-negative integer, got {frame!r}")
        mask_files = frame_masks = None
        if "mask" in obj or points or boxes:
            raw = obj.get("mask", [])
            raw_list = raw if isinstance(raw, list) else [raw]
            if not raw_list and "mask" in obj:
                raise ValueError("'mask' is an empty list")
            mask_files = tuple(_resolve(base, m, "mask") for m in raw_list)
        else:
            raw = obj["masks"]
            if not isinstance(raw, list) or not raw:
                raise ValueError("'masks' must be a non-empty list (one map per object)")
            fms = []
            for k, per_obj in enumerate(raw):
                if not isinstance(per_obj, Mapping) or not per_obj:
                    raise ValueError(f"'masks'[{k}] must be a non-empty map from frame index to mask")
                fm: dict[int, MaskSpec] = {}
                for key, spec in per_obj.items():
                    try:
                        t = int(key)
                    except (TypeError, ValueError):
                        raise ValueError(
                            f"'masks'[{k}] has a frame key {key!r} that is not an integer"
                        ) from None
                    if t < 0:
                        raise ValueError(f"'masks'[{k}] has a negative frame key {key!r}")
                    if spec is None or isinstance(spec, Mapping):
                        fm[t] = dict(spec) if spec is not None else None
                    else:
                        fm[t] = _resolve(base, spec, "masks")
                fms.append(dict(sorted(fm.items())))
            frame_masks = tuple(fms)
    except ValueError as exc:
        return BatchQuestion(id=qid, line=line, problem=str(exc))
    return BatchQuestion(
        id=qid,
        line=line,
        video=video,
        question=question,
        options=options,
        mask_files=mask_files,
        frame=frame,
        frame_masks=frame_masks,
        points=points,
        boxes=boxes,
    )


def _parse_point_box(
    obj: Mapping[str, Any],
) -> tuple[tuple[str, ...], tuple[tuple[float, float, float, float], ...]]:
    """The ``points`` and ``box`` fields: one entry per object (a lone string or 4-number box is one
    object). Points are kept as ``"x,y,label;…"`` text, checked with the CLI's parser."""
    from garvideo.trackers import parse_box, parse_points

    raw_pts = obj.get("points", [])
    if isinstance(raw_pts, str):
        raw_pts = [raw_pts]
    if not isinstance(raw_pts, list):
        raise ValueError(  # noqa: TRY004 - parse_question records ValueErrors as the item's problem
            "'points' must be a list with one entry per object ('x,y[,label];…' or [[x, y, label], …])"
        )
    points = []
    for k, entry in enumerate(raw_pts):
        pts, labels = parse_points(entry, f"'points'[{k}]")
        points.append(";".join(f"{x:g},{y:g},{lab}" for (x, y), lab in zip(pts.tolist(), labels.tolist())))
    raw_box = obj.get("box", [])
    if isinstance(raw_box, str) or (
        isinstance(raw_box, list) and len(raw_box) == 4 and all(isinstance(v, (int, float)) for v in raw_box)
    ):
        raw_box = [raw_box]
    if not isinstance(raw_box, list):
        raise ValueError("'box' must be a list with one [x0, y0, x1, y1] (or 'x0,y0,x1,y1') per object")  # noqa: TRY004
    boxes = tuple(parse_box(b, f"'box'[{k}]") for k, b in enumerate(raw_box))
    return tuple(points), boxes


def load_questions(path: PathLike, *, root: PathLike | None = None) -> list[BatchQuestion]:
    """Read and check a questions JSONL file before any work starts.

    Args:
        path: the questions file.
        root: the folder relative ``video``/``mask`` paths are resolved against (default: the
            questions file's folder).

    Raises:
        InputError: missing file, a line that is not a JSON object, a missing or duplicate ``id``.
        A line whose other fields are wrong is returned with :attr:`BatchQuestion.problem` set.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such questions file")
    contents = read_jsonl(p, tolerate_truncated_tail=False)
    base = Path(root) if root is not None else p.parent
    out: list[BatchQuestion] = []
    seen: dict[str, int] = {}
    lineno = 0
    for lineno, obj in enumerate(contents.records, 1):
        try:
            q = parse_question(obj, base=base, line=lineno)
        except InputError as exc:  # name the questions file, not only the line
            raise InputError(f"{p}:{lineno}", exc.problem) from None
        k = record_key(q.id)
        if k in seen:
            raise InputError(f"{p}:{lineno}", f"id {q.id!r} already used on line {seen[k]}")
        seen[k] = lineno
        out.append(q)
    if not out:
        raise InputError(p, "no questions in the file")
    return out


# ----------------------------------------------------------------------------------------------------
# answering
# ----------------------------------------------------------------------------------------------------
class ClipCache:
    """Keeps the last prepared clip (or the error preparing it raised), keyed by a clip key.

    Items of one group are processed one after the other (:class:`garvideo.jsonl.JsonlRun`'s
    ``group``), so one entry is enough to prepare each clip once and hold one clip in memory.

    Args:
        release: called with a cached value when it is replaced or cleared (e.g. to close the clip).
    """

    def __init__(self, release: Callable[[Any], None] | None = None) -> None:
        self._release = release
        self._filled = False
        self._key: Hashable = None
        self._value: Any = None
        self._error: Exception | None = None

    def get(self, key: Hashable, make: Callable[[], Any]) -> tuple[Any, float]:
        """The prepared clip for ``key`` and the seconds spent preparing it now (0 when cached).

        Raises:
            Exception: what ``make`` raised for this key (again for every item of the group).
        """
        if not self._filled or key != self._key:
            self.clear()
            self._key = key
            t0 = time.perf_counter()
            try:
                self._value = make()
            except Exception as exc:
                self._error, self._filled = exc, True
                raise
            self._filled = True
            return self._value, time.perf_counter() - t0
        if self._error is not None:
            raise self._error
        return self._value, 0.0

    def clear(self) -> None:
        """Drop the cached clip (released: its video, features and KV cache are freed)."""
        if self._filled and self._value is not None and self._release is not None:
            self._release(self._value)
        self._filled, self._key, self._value, self._error = False, None, None, None


def close_clip(clip: Any) -> None:
    """Release a prepared clip (its video and cached features), for :class:`ClipCache`."""
    close = getattr(clip, "close", None)
    if callable(close):
        close()


def make_pipeline(
    model: str | None = None,
    tracker: str = "auto",
    num_frames: int = 8,
    *,
    keyframes: str = "uniform",
    roi_mode: str = "official",
    max_new_tokens: int | None = None,
    device: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """The :class:`garvideo.pipeline.GarVideo` of a batch or eval run.

    Under torchrun (``LOCAL_RANK`` set) with CUDA and no ``device`` given, each rank uses the GPU
    ``cuda:LOCAL_RANK``, so ``torchrun --nproc-per-node N`` spreads the shards over N GPUs.
    """
    import os

    from garvideo.pipeline import GarVideo

    env = os.environ if env is None else env
    if device is None and "LOCAL_RANK" in env:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(env['LOCAL_RANK'])}"
    kwargs: dict[str, Any] = {
        "tracker": tracker,
        "num_frames": num_frames,
        "keyframes": keyframes,
        "roi_mode": roi_mode,
        "device": device,
    }
    if max_new_tokens is not None:
        kwargs["max_new_tokens"] = max_new_tokens
    return GarVideo(model, **kwargs)


def answer_timings(prepare_s: float, result: Any, t0: float) -> dict[str, float]:
    """Seconds per stage of one answer: ``prepare`` (opening the clip, reading the masks, tracking and
    encoding — 0 for the later questions of a shared clip), the answer's own stages as the pipeline
    reports them (the clip's ``decode`` / ``tracking`` / ``vision`` on its first question, ``prefill``,
    ``generation``), and ``total`` (this item, wall time)."""
    timings: dict[str, float] = {"prepare": prepare_s}
    timings.update({k: float(v) for k, v in (getattr(result, "timings", None) or {}).items() if k != "total"})
    timings["total"] = time.perf_counter() - t0
    return timings


def _load_spec(spec: MaskSpec, size: tuple[int, int], where: str) -> np.ndarray | None:
    from garvideo.masks import load_mask, rle_decode

    if spec is None:
        return None
    if isinstance(spec, Path):
        masks = load_mask(spec, size, allow_empty=True)
        if len(masks) != 1:
            raise InputError(spec, f"holds {len(masks)} objects; a per-frame mask file must hold one")
        return masks[0]
    return rle_decode(spec, source=where, size=size)


def prepare_question_clip(gv: Any, q: BatchQuestion) -> Any:
    """Open ``q``'s video, read its masks and ``gv.prepare`` the clip (tracking, features, prefix)."""
    from garvideo.masks import load_masks
    from garvideo.video import open_video

    video = open_video(q.video)
    try:
        size = (video.height, video.width)
        if q.mask_files is not None:
            masks = load_masks(q.mask_files, size)
            if q.points or q.boxes:  # SAM 2 segments the clicks and boxes on the prompt frame
                from garvideo.trackers import build_prompts, masks_from_prompts

                prompts = build_prompts(masks, q.points, q.boxes, q.frame)
                masks = masks_from_prompts(gv.tracker, video, prompts)
            return gv.prepare(video, masks=masks, frame=q.frame)
        frame_masks = [
            {t: _load_spec(spec, size, f"id {q.id}: masks[{k}][{t}]") for t, spec in fm.items()}
            for k, fm in enumerate(q.frame_masks or ())
        ]
        return gv.prepare(video, frame_masks=frame_masks)
    except BaseException:
        video.close()
        raise


def answer_fields(
    frames: Sequence[int] = (),
    error: str | None = None,
    notes: Sequence[str] = (),
    timings: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The keys every answer line ends with (batch QA and VideoRefer-Bench-Q predictions):
    ``frames`` (ints), ``error``, ``notes`` and ``timings`` (seconds, rounded to 0.1 ms)."""
    return {
        "frames": [int(f) for f in frames],
        "error": error,
        "notes": list(notes),
        "timings": {k: round(float(v), 4) for k, v in (timings or {}).items()},
    }


def answer_record(
    qid: Any,
    *,
    answer: str | None,
    pred: str,
    frames: Sequence[int] = (),
    error: str | None = None,
    notes: Sequence[str] = (),
    timings: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """One output line of batch QA (keys :data:`ANSWER_KEYS`, in order)."""
    return {"id": qid, "answer": answer, "pred": pred, **answer_fields(frames, error, notes, timings)}


@dataclass
class BatchAnswerer:
    """Answers :class:`BatchQuestion` items with a :class:`garvideo.pipeline.GarVideo` (``gv``).

    Consecutive questions on the same clip key reuse one prepared clip (tracking, keyframe features
    and the prompt prefix's KV cache).
    """

    gv: Any
    cache: ClipCache = field(default_factory=lambda: ClipCache(close_clip))

    def __call__(self, q: BatchQuestion) -> dict[str, Any]:
        if q.problem is not None:
            raise InputError(f"id {q.id}", q.problem)
        t0 = time.perf_counter()
        clip, prep_s = self.cache.get(q.clip_key(), lambda: prepare_question_clip(self.gv, q))
        result = self.gv.ask(clip, q.question, options=list(q.options) if q.options else None)
        text = str(result.text)
        return answer_record(
            q.id,
            answer=result.letter if q.options else text,
            pred=text,
            frames=list(result.frames),
            notes=list(result.notes or []),
            timings=answer_timings(prep_s, result, t0),
        )


def error_record(q: BatchQuestion, exc: BaseException) -> dict[str, Any]:
    """The output line of a question that failed."""
    return answer_record(q.id, answer=None, pred="", error=error_text(exc))


def batch_run_spec(answer: Callable[[BatchQuestion], dict[str, Any]]) -> JsonlRun[BatchQuestion]:
    """The :class:`garvideo.jsonl.JsonlRun` of batch QA with an answering function."""
    return JsonlRun(
        key=lambda q: q.id,
        process=answer,
        on_error=error_record,
        group=lambda q: q.clip_key(),
    )


def plan_batch(
    questions: PathLike, out: PathLike, *, root: PathLike | None = None, shard: Any = None
) -> list[BatchQuestion]:
    """Check a batch run's files and options (before any model work) and read its questions.

    Raises:
        InputError: ``out`` is the questions file, a bad ``shard``, or what :func:`load_questions` raises.
    """
    from garvideo.jsonl import check_output, resolve_shard

    if Path(questions).resolve() == Path(out).resolve():
        raise InputError("--out", "is the questions file itself; write the answers to another file")
    resolve_shard(shard)
    qs = load_questions(questions, root=root)
    check_output(out, shard)
    return qs


def run_batch(
    questions: Sequence[BatchQuestion] | PathLike,
    out: PathLike,
    gv: Any,
    *,
    root: PathLike | None = None,
    shard: Any = None,
    retry_errors: bool = False,
    progress: Callable[[Progress], None] | None = None,
) -> RunSummary:
    """Answer every question not yet in ``out`` (resumable, sharded; see :func:`garvideo.jsonl.run_jsonl`).

    Args:
        questions: the parsed questions, or the questions JSONL file.
        out: the answers JSONL (``OUT.part-I-of-N.jsonl`` per rank when sharded).
        gv: a :class:`garvideo.pipeline.GarVideo`.
        root: where relative paths of a questions file are resolved (default: its folder).
        shard: ``"I/N"``, a :class:`garvideo.jsonl.Shard`, or ``None`` (torchrun's env, else unsharded).
        retry_errors: redo questions whose earlier record has an error.
        progress: called after each question.
    """
    if isinstance(questions, (str, Path)):
        qs = plan_batch(questions, out, root=root, shard=shard)
    else:
        qs = list(questions)
    answerer = BatchAnswerer(gv)
    try:
        return run_jsonl(
            qs, out, batch_run_spec(answerer), shard=shard, retry_errors=retry_errors, progress=progress
        )
    finally:
        answerer.cache.clear()
