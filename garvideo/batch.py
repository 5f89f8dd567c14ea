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
Runs are resumable and shardable (:mod:`garvideo.jsonl`; a clip's questions stay on one rank); the
run's settings are recorded beside the answers (``<stem>.settings.json``, :mod:`garvideo.run_settings`)
and a rerun resumes only with the same ones.
Questions on the same clip and masks are processed one after the other on one prepared clip, so
tracking, frame encoding and the prompt prefix are computed once for all of them.

:class:`QuestionRunner` (used here and by :mod:`garvideo.eval.videorefer_q`) overlaps the CPU work
with the model: with ``prefetch=N`` a background thread prepares up to ``N`` clips ahead (opens the
video, reads the masks, tracks, picks and decodes the keyframes) while the calling thread runs the
model (keyframe encoding, prefill, generation) on the current ones; with ``batch_size=B`` the model
answers ``B`` consecutive questions at a time (:meth:`GarVideo.run_batch`). Records, their order,
resume and errors are the same as with ``prefetch=0, batch_size=1`` (everything in the calling
thread, one question at a time).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from garvideo.errors import InputError, PathLike
from garvideo.jsonl import JsonlRun, Progress, RunSummary, error_text, read_jsonl, record_key, run_jsonl

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PREFETCH = 2
"""Clips prepared ahead by default (``--prefetch``)."""

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
            are the ``mask`` files' first, then ``points``, then ``boxes``, then ``text``.
        texts: more objects named in words on ``frame``, one string per object (SAM 3's concept detector,
            :mod:`garvideo.trackers.text`; its candidates go into the answer line's ``text``).
        text_picks: the candidate rank used for each text (default 0, the best); at most one per text.
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
    texts: tuple[str, ...] = ()
    text_picks: tuple[int, ...] = ()
    problem: str | None = None

    def clip_key(self) -> Hashable:
        """Questions with equal keys share one prepared clip (same video and same masks)."""
        if self.problem is not None:
            return ("problem", record_key(self.id))
        if self.mask_files is not None or self.points or self.boxes or self.texts:
            files = tuple(map(str, self.mask_files or ()))
            prompt = (self.frame, self.points, self.boxes, self.texts, self.text_picks)
            return (str(self.video), "mask", files, *prompt)
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
        texts, text_picks = _parse_text(obj)
        if "masks" in obj and ("mask" in obj or points or boxes or texts):
            raise ValueError(
                "give either 'mask' / 'points' / 'box' / 'text' (with 'frame') or 'masks' (per frame), not both"
            )
        if not ("mask" in obj or "masks" in obj or points or boxes or texts):
            raise ValueError(
                "give either 'mask' / 'points' / 'box' / 'text' (with 'frame') or 'masks' (per frame)"
            )
        frame = obj.get("frame", 0)
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise ValueError(f"'frame' must be a non-negative integer, got {frame!r}")
        mask_files = frame_masks = None
        if "mask" in obj or points or boxes or texts:
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
        texts=texts,
        text_picks=text_picks,
    )


def _parse_text(obj: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The ``text`` field (a string or a list of strings, one object each) and ``text_pick`` (an int or a
    list of ints, the candidate rank of each text in order; at most one per text)."""
    raw = obj.get("text", [])
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("'text' must be a non-empty string or a list of them (one object each)")
    if "text" in obj and not texts:
        raise ValueError("'text' is an empty list")
    raw_pick = obj.get("text_pick", [])
    picks = [raw_pick] if isinstance(raw_pick, int) and not isinstance(raw_pick, bool) else raw_pick
    if not isinstance(picks, list) or not all(
        isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in picks
    ):
        raise ValueError("'text_pick' must be a candidate rank (0 = best) or a list of them, one per text")
    if len(picks) > len(texts):
        raise ValueError(f"'text_pick' has {len(picks)} entries for {len(texts)} text(s); give one per text")
    return tuple(texts), tuple(picks)


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
def close_clip(clip: Any) -> None:
    """Release a prepared clip (its video and cached features)."""
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
    dtype: str | None = None,
    tracker_options: Mapping[str, Any] | None = None,
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
        "dtype": dtype,
        "tracker_options": dict(tracker_options or {}),
    }
    if max_new_tokens is not None:
        kwargs["max_new_tokens"] = max_new_tokens
    return GarVideo(model, **kwargs)


def answer_timings(
    prepare_s: float, result: Any, t0: float, *, wait_s: float | None = None, items: int = 1
) -> dict[str, float]:
    """Seconds per stage of one answer: ``prepare`` (opening the clip, reading the masks, tracking and
    encoding — 0 for the later questions of a shared clip), ``wait`` (with prefetching: how long the
    model waited for this clip to be prepared), the answer's own stages as the pipeline reports them
    (the clip's ``decode`` / ``tracking`` / ``vision`` on its first question, ``prefill``,
    ``generation``), and ``total`` (wall time since ``t0``, divided by ``items`` when ``items``
    questions were answered together)."""
    timings: dict[str, float] = {"prepare": prepare_s}
    if wait_s is not None:
        timings["wait"] = wait_s
    timings.update({k: float(v) for k, v in (getattr(result, "timings", None) or {}).items() if k != "total"})
    timings["total"] = (time.perf_counter() - t0) / max(1, items)
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


def prepare_question_clip(
    gv: Any,
    q: BatchQuestion,
    *,
    encode: bool = True,
    progress: Callable[[int, int], None] | None = None,
    text_detector: Any = None,
    found: list[Any] | None = None,
) -> Any:
    """Open ``q``'s video, read its masks and ``gv.prepare`` the clip (tracking and, with ``encode``,
    the keyframe features); ``progress`` is passed on to the tracking.

    ``q.texts`` are found on ``q.frame`` by ``text_detector`` (a :class:`garvideo.trackers.text.TextDetector`,
    :func:`garvideo.trackers.text.text_prompts`); their :class:`~garvideo.trackers.text.TextDetection` are
    appended to ``found`` when given.

    Raises:
        InputError: a bad question; ``NoTextMatchError`` for a text with no candidate above the threshold.
    """
    from garvideo.masks import load_masks
    from garvideo.video import open_video

    if q.problem is not None:
        raise InputError(f"id {q.id}", q.problem)
    if q.texts and text_detector is None:
        raise InputError(f"id {q.id}", "has 'text' but the run has no SAM 3 text detector")
    video = open_video(q.video)
    try:
        size = (video.height, video.width)
        if q.mask_files is not None:
            masks = load_masks(q.mask_files, size)
            if q.points or q.boxes:  # SAM 2 segments the clicks and boxes on the prompt frame
                from garvideo.trackers import build_prompts, masks_from_prompts

                prompts = build_prompts(masks, q.points, q.boxes, q.frame)
                masks = masks_from_prompts(gv.tracker, video, prompts)
            if q.texts:
                from garvideo.trackers.text import text_prompts

                if not 0 <= q.frame < video.num_frames:
                    raise InputError(
                        f"id {q.id}", f"'frame' {q.frame} is past the clip's {video.num_frames} frames"
                    )
                text_found, dets = text_prompts(
                    text_detector, video, q.texts, frame=q.frame, first_id=len(masks) + 1, picks=q.text_picks
                )
                masks = [*masks, *(p.mask for p in text_found)]
                if found is not None:
                    found.extend(dets)
            return gv.prepare(video, masks=masks, frame=q.frame, encode=encode, progress=progress)
        frame_masks = [
            {t: _load_spec(spec, size, f"id {q.id}: masks[{k}][{t}]") for t, spec in fm.items()}
            for k, fm in enumerate(q.frame_masks or ())
        ]
        return gv.prepare(video, frame_masks=frame_masks, encode=encode, progress=progress)
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


# ----------------------------------------------------------------------------------------------------
# the runner: clips prepared ahead, questions answered in batches
# ----------------------------------------------------------------------------------------------------
def make_question(
    clip: Any, question: str | None, options: Sequence[str] | None = None, max_new_tokens: int | None = None
) -> Any:
    """One request for :func:`answer_questions`: a :class:`garvideo.pipeline.Question`."""
    from garvideo.pipeline import Question

    return Question(
        clip=clip,
        question=question,
        options=list(options) if options is not None else None,
        max_new_tokens=max_new_tokens,
    )


def ask_question(gv: Any, q: Any) -> Any:
    """Answer one request with ``gv.describe`` (no question) or ``gv.ask``."""
    if q.question is None:
        return gv.describe(q.clip, max_new_tokens=q.max_new_tokens)
    options = list(q.options) if q.options is not None else None
    return gv.ask(q.clip, q.question, options=options, max_new_tokens=q.max_new_tokens)


def answer_questions(gv: Any, questions: Sequence[Any], *, batch_size: int = 1) -> list[Any]:
    """The result of each request (:func:`make_question`), or the exception answering it raised.

    ``batch_size > 1`` goes through ``gv.run_batch`` (batched generation, results identical to one by
    one in float32); when a batch raises, its requests are answered one by one, so each failing
    request gets its own error, exactly as with ``batch_size=1``.
    """
    if batch_size > 1 and len(questions) > 1:
        try:
            return list(gv.run_batch(list(questions), batch_size=batch_size))
        except Exception as exc:  # noqa: BLE001 - redone one by one below, each error kept
            logger.info("a batch of %d questions failed (%s); answering one by one", len(questions), exc)
    out: list[Any] = []
    for q in questions:
        try:
            out.append(ask_question(gv, q))
        except Exception as exc:  # noqa: BLE001 - the item's error, recorded by the run
            out.append(exc)
    return out


@dataclass
class RunnerStats:
    """Where the time of a :class:`QuestionRunner` went (seconds; filled in as it runs).

    Attributes:
        questions: questions answered (errors included).
        clips: clips prepared.
        model_s: the calling thread in the model: keyframe encoding, prefill and generation.
        wait_s: the calling thread waiting for a clip being prepared in the background.
        prepare_s: preparing clips (in the background thread when prefetching; includes the keyframe
            encoding when not).
        batches: calls of the model's answering step.
    """

    questions: int = 0
    clips: int = 0
    model_s: float = 0.0
    wait_s: float = 0.0
    prepare_s: float = 0.0
    batches: int = 0


class _Cancelled(Exception):
    """Raised inside a background preparation when the runner is closed (Ctrl-C, end of run)."""


class _DecodedKeyframes:
    """A video whose keyframes were decoded by the preparing thread; anything else is decoded on demand."""

    def __init__(self, video: Any, frames: dict[int, Any]) -> None:
        self._video = video
        self._frames = frames

    def frames(self, indices: Any = None) -> Iterator[tuple[int, Any]]:
        if indices is not None:
            idx = [int(i) for i in indices]
            if all(i in self._frames for i in idx):
                return iter([(i, self._frames[i]) for i in idx])
        return self._video.frames(indices)

    def close(self) -> None:
        self._frames = {}
        self._video.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._video, name)


@dataclass
class _Slot:
    """A clip of the run: its background preparation, then the prepared value or the error."""

    future: Future | None = None
    value: Any = None
    error: Exception | None = None
    ready: bool = False
    prepare_s: float = 0.0
    wait_s: float = 0.0
    reported: bool = False


class QuestionRunner(Generic[T]):
    """Answers the items of a :func:`garvideo.jsonl.run_jsonl` run, preparing clips ahead and batching.

    Use it as the run's ``process`` and ``plan`` (:class:`garvideo.jsonl.JsonlRun`). ``plan`` gives the
    items in processing order (consecutive items with equal :meth:`clip_key` share one clip); then
    each call answers its item:

    * ``prefetch=0``: the clip is prepared (tracked and encoded) in the calling thread when its first
      item comes, as one-by-one calls of ``gv.prepare`` / ``gv.ask`` would;
    * ``prefetch=N``: one background thread prepares the next ``N`` clips (video opened, masks read,
      tracking, keyframes chosen and decoded: :meth:`GarVideo.prepare` with ``encode=False``) while the
      calling thread runs the model; the keyframes are encoded in the calling thread;
    * ``batch_size=B``: ``B`` consecutive items (across clips) are answered by one
      :func:`answer_questions` call; the results of the later ones are returned by the next calls.

    A clip that fails to prepare is the error of each of its items; an item that fails alone is its
    own error (:meth:`__call__` raises it, the run records it). Clips are closed when their last item
    is answered; :meth:`close` stops the background thread (the clip being tracked stops at its next
    frame) and closes what is left.

    Subclasses say what a clip is and what to ask: :meth:`clip_key`, :meth:`prepare_clip`,
    :meth:`request`, :meth:`record` (and :meth:`clip_of` when the prepared value is more than a clip).
    """

    def __init__(
        self,
        gv: Any,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        batch_size: int = 1,
        stats: RunnerStats | None = None,
    ) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise InputError("--prefetch", f"must be an integer >= 0, got {prefetch!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError("--batch-size", f"must be an integer >= 1, got {batch_size!r}")
        self.gv = gv
        self.prefetch = prefetch
        self.batch_size = batch_size
        self.stats = stats if stats is not None else RunnerStats()
        self._items: list[T] = []
        self._run_of: list[int] = []  # the clip run (index) of each planned position
        self._run_first: list[int] = []  # first position of each run
        self._run_last: list[int] = []  # last position of each run
        self._pos = 0
        self._outcomes: dict[int, Any] = {}  # position -> record or exception, answered ahead
        self._slots: dict[int, _Slot] = {}  # run -> its clip
        self._pool: ThreadPoolExecutor | None = None
        self._cancel = threading.Event()

    # -- what subclasses define -------------------------------------------------------------------------
    def clip_key(self, item: T) -> Hashable:
        """Items with equal keys (and next to each other) share one prepared clip."""
        raise NotImplementedError

    def prepare_clip(self, item: T, *, encode: bool, progress: Callable[[int, int], None] | None) -> Any:
        """The prepared clip of ``item`` (``encode=False``: not encoded yet); may raise."""
        raise NotImplementedError

    def clip_of(self, value: Any) -> Any:
        """The :class:`garvideo.pipeline.PreparedClip` of a value :meth:`prepare_clip` returned."""
        return value

    def request(self, item: T, value: Any) -> Any:
        """The request (:func:`make_question`) of ``item`` on its prepared clip; may raise."""
        raise NotImplementedError

    def record(self, item: T, value: Any, result: Any, timings: dict[str, float]) -> dict[str, Any]:
        """The output record of ``item`` from its answer."""
        raise NotImplementedError

    # -- the run ---------------------------------------------------------------------------------------
    def plan(self, items: Sequence[T]) -> None:
        """Take the items of the run in processing order (drops what an earlier plan left)."""
        self.close()
        self._items = list(items)
        self._run_of, self._run_first, self._run_last = [], [], []
        last_key: Any = None
        for i, it in enumerate(self._items):
            k = self.clip_key(it)
            if i == 0 or k != last_key:
                self._run_first.append(i)
                self._run_last.append(i)
                last_key = k
            self._run_of.append(len(self._run_first) - 1)
            self._run_last[-1] = i
        self._pos = 0

    def __call__(self, item: T) -> dict[str, Any]:
        """The record of ``item`` (the next planned one; an unplanned item is run on its own)."""
        if self._pos >= len(self._items) or self._items[self._pos] is not item:
            self.plan([item])
        pos = self._pos
        if pos not in self._outcomes:
            self._answer_from(pos)
        self._pos += 1
        outcome = self._outcomes.pop(pos)
        self._release_finished()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self) -> None:
        """Stop background preparation and close every clip still held."""
        self._cancel.set()
        for slot in self._slots.values():
            if slot.future is not None:
                slot.future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for run in list(self._slots):
            self._release(run)
        self._outcomes.clear()
        self._cancel.clear()

    # -- internals -------------------------------------------------------------------------------------
    def _answer_from(self, pos: int) -> None:
        t0 = time.perf_counter()
        positions = range(pos, min(len(self._items), pos + self.batch_size))
        self._prefetch(self._run_of[pos], self._run_of[positions[-1]])
        ready: list[tuple[int, _Slot, Any]] = []
        for i in positions:
            item = self._items[i]
            try:
                slot = self._clip(self._run_of[i])
                ready.append((i, slot, self.request(item, slot.value)))
            except Exception as exc:  # noqa: BLE001 - the item's error, raised by __call__
                self._outcomes[i] = exc
        t1 = time.perf_counter()
        results = answer_questions(self.gv, [q for _, _, q in ready], batch_size=self.batch_size)
        if ready:
            self.stats.model_s += time.perf_counter() - t1
            self.stats.batches += 1
        for (i, slot, _), result in zip(ready, results):
            if isinstance(result, Exception):
                self._outcomes[i] = result
                continue
            prep_s, wait_s = 0.0, None
            if not slot.reported:
                slot.reported = True
                prep_s = slot.prepare_s
                wait_s = slot.wait_s if self.prefetch else None
            timings = answer_timings(prep_s, result, t0, wait_s=wait_s, items=len(ready))
            try:
                self._outcomes[i] = self.record(self._items[i], slot.value, result, timings)
            except Exception as exc:  # noqa: BLE001 - the item's error, raised by __call__
                self._outcomes[i] = exc
        self.stats.questions += len(positions)

    def _prefetch(self, first: int, last: int) -> None:
        """Start preparing the clips ``first`` to ``last`` (those of the batch about to be answered) and
        the ``prefetch`` clips after them (the window of clips held ahead)."""
        if self.prefetch <= 0:
            return
        for r in range(first, min(len(self._run_first), last + self.prefetch + 1)):
            if r not in self._slots:
                self._submit(r)

    def _submit(self, run: int) -> _Slot:
        slot = _Slot()
        if self.prefetch > 0:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="garvideo-prepare")
            slot.future = self._pool.submit(self._prepare_ahead, self._items[self._run_first[run]])
        self._slots[run] = slot
        return slot

    def _check_cancel(self, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise _Cancelled("the run was stopped")

    def _prepare_ahead(self, item: T) -> tuple[Any, Exception | None, float]:
        """Background thread: prepare a clip without encoding it, and decode its keyframes."""
        t0 = time.perf_counter()
        if self._cancel.is_set():
            return None, _Cancelled("the run was stopped"), 0.0
        value = None
        try:
            self.gv.bundle  # noqa: B018 - the keyframe budget counts with the model's tokenizer and context
            value = self.prepare_clip(item, encode=False, progress=self._check_cancel)
            clip = self.clip_of(value)
            if clip.video is not None:
                t = time.perf_counter()
                frames = dict(clip.video.frames(list(clip.frames)))
                clip.video = _DecodedKeyframes(clip.video, frames)
                clip.timings["decode"] = clip.timings.get("decode", 0.0) + time.perf_counter() - t
        except Exception as exc:  # noqa: BLE001 - the clip's error, raised for each of its items
            if value is not None:
                close_clip(self.clip_of(value))
            return None, exc, time.perf_counter() - t0
        return value, None, time.perf_counter() - t0

    def _clip(self, run: int) -> _Slot:
        """The prepared (and encoded) clip of ``run``; raises its preparation error."""
        slot = self._slots.get(run) or self._submit(run)
        if not slot.ready:
            if slot.future is not None:
                t = time.perf_counter()
                value, error, seconds = slot.future.result()
                slot.wait_s = time.perf_counter() - t
                self.stats.wait_s += slot.wait_s
                if error is None:
                    t = time.perf_counter()
                    try:
                        self.gv.encode(self.clip_of(value))
                    except Exception as exc:  # noqa: BLE001 - the clip's error
                        close_clip(self.clip_of(value))
                        value, error = None, exc
                    encode_s = time.perf_counter() - t
                    self.stats.model_s += encode_s
                    seconds += encode_s
            else:
                t = time.perf_counter()
                value, error = None, None
                try:
                    value = self.prepare_clip(self._items[self._run_first[run]], encode=True, progress=None)
                except Exception as exc:  # noqa: BLE001 - the clip's error
                    error = exc
                seconds = time.perf_counter() - t
                if value is not None:
                    self.stats.model_s += float(self.clip_of(value).timings.get("vision", 0.0))
            slot.value, slot.error, slot.prepare_s, slot.ready = value, error, seconds, True
            self.stats.prepare_s += seconds
            self.stats.clips += 1
        if slot.error is not None:
            raise slot.error
        return slot

    def _release(self, run: int) -> None:
        slot = self._slots.pop(run, None)
        if slot is None:
            return
        value = slot.value
        if not slot.ready and slot.future is not None and slot.future.done() and not slot.future.cancelled():
            value = slot.future.result()[0]
        if value is not None:
            close_clip(self.clip_of(value))

    def _release_finished(self) -> None:
        """Close the clips whose items are all answered."""
        for run in [r for r in self._slots if self._run_last[r] < self._pos]:
            if all(p not in self._outcomes for p in range(self._run_first[run], self._run_last[run] + 1)):
                self._release(run)


class BatchAnswerer(QuestionRunner[BatchQuestion]):
    """Answers :class:`BatchQuestion` items with a :class:`garvideo.pipeline.GarVideo` (``gv``).

    Consecutive questions on the same clip key reuse one prepared clip (tracking, keyframe features
    and the prompt prefix's KV cache); see :class:`QuestionRunner` for ``prefetch`` and ``batch_size``.
    """

    #: SAM 3's concept detector for questions with ``text`` (``None``: such questions fail with a clear error).
    text_detector: Any = None

    def clip_key(self, item: BatchQuestion) -> Hashable:
        return item.clip_key()

    def prepare_clip(
        self, item: BatchQuestion, *, encode: bool, progress: Callable[[int, int], None] | None
    ) -> Any:
        found: list[Any] = []
        clip = prepare_question_clip(
            self.gv, item, encode=encode, progress=progress, text_detector=self.text_detector, found=found
        )
        return _TextPrepared(clip, tuple(found))

    def clip_of(self, value: Any) -> Any:
        return value.clip

    def request(self, item: BatchQuestion, value: Any) -> Any:
        return make_question(value.clip, item.question, item.options)

    def record(
        self, item: BatchQuestion, value: Any, result: Any, timings: dict[str, float]
    ) -> dict[str, Any]:
        text = str(result.text)
        rec = answer_record(
            item.id,
            answer=result.letter if item.options else text,
            pred=text,
            frames=list(result.frames),
            notes=list(result.notes or []),
            timings=timings,
        )
        if value.found:
            rec["text"] = [det.to_json() for det in value.found]
        return rec


@dataclass(frozen=True)
class _TextPrepared:
    """A question's prepared clip and the detections of its ``text`` objects (in order)."""

    clip: Any
    found: tuple[Any, ...] = ()


def error_record(q: BatchQuestion, exc: BaseException) -> dict[str, Any]:
    """The output line of a question that failed (a text with no match: ``error`` lists the best scores)."""
    return answer_record(q.id, answer=None, pred="", error=error_text(exc))


def batch_run_spec(answer: Callable[[BatchQuestion], dict[str, Any]]) -> JsonlRun[BatchQuestion]:
    """The :class:`garvideo.jsonl.JsonlRun` of batch QA with an answering function (a
    :class:`QuestionRunner` also gets the plan of the run)."""
    return JsonlRun(
        key=lambda q: q.id,
        process=answer,
        on_error=error_record,
        group=lambda q: q.clip_key(),
        plan=answer.plan if isinstance(answer, QuestionRunner) else None,
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
    check_first_video(qs, questions, root)
    check_output(out, shard)
    return qs


def check_first_video(qs: Sequence[BatchQuestion], questions: PathLike, root: PathLike | None) -> None:
    """Refuse a run whose first answerable question's video does not exist (a wrong ``--root`` or a
    questions file moved away from its clips) before any work, instead of failing every question.

    Raises:
        InputError: naming ``--root`` (when given) or the questions file.
    """
    first = next((q for q in qs if q.problem is None and q.video is not None), None)
    if first is None or first.video.exists():
        return
    if root is not None:
        raise InputError(
            "--root",
            f"the video of the first question (id {first.id!r}), {first.video}, does not exist under "
            f"{root}; --root must be the folder the questions' relative paths start from",
        )
    raise InputError(
        f"{questions}:{first.line}",
        f"the video of the first question (id {first.id!r}), {first.video}, does not exist (relative "
        "paths start from the questions file's folder; pass --root DIR for another one)",
    )


def run_batch(
    questions: Sequence[BatchQuestion] | PathLike,
    out: PathLike,
    gv: Any,
    *,
    root: PathLike | None = None,
    shard: Any = None,
    skip_failed: bool = False,
    progress: Callable[[Progress], None] | None = None,
    prefetch: int = DEFAULT_PREFETCH,
    batch_size: int = 1,
    stats: RunnerStats | None = None,
    settings: Any = None,
    overwrite: bool = False,
    text_detector: Any = None,
) -> RunSummary:
    """Answer every question not yet in ``out`` (resumable, sharded; see :func:`garvideo.jsonl.run_jsonl`).

    Args:
        questions: the parsed questions, or the questions JSONL file.
        out: the answers JSONL (``OUT.part-I-of-N.jsonl`` per rank when sharded).
        gv: a :class:`garvideo.pipeline.GarVideo`.
        root: where relative paths of a questions file are resolved (default: its folder).
        shard: ``"I/N"``, a :class:`garvideo.jsonl.Shard`, or ``None`` (torchrun's env, else unsharded).
        skip_failed: keep questions whose earlier record has an error (by default they are redone).
        progress: called after each question.
        prefetch: clips prepared ahead in a background thread (0: everything in this thread).
        batch_size: questions answered together (batched generation).
        stats: filled in with where the time went (:class:`RunnerStats`).
        settings: the :class:`garvideo.run_settings.RunSettings` recorded with the answers (default:
            those of ``gv``, :func:`garvideo.run_settings.build_run_settings`).
        overwrite: start afresh even when ``out`` holds answers (made with other settings or not).
        text_detector: a :class:`garvideo.trackers.text.TextDetector` for questions with ``text`` (its
            threshold and checkpoint join the default ``settings``, :func:`garvideo.run_settings.text_settings`).

    Raises:
        SettingsMismatch: ``out`` holds answers made with other settings (and not ``overwrite``).
    """
    from garvideo.run_settings import build_run_settings, text_settings

    if isinstance(questions, (str, Path)):
        qs = plan_batch(questions, out, root=root, shard=shard)
    else:
        qs = list(questions)
    if settings is None:
        settings = build_run_settings(gv, **text_settings(text_detector))
    answerer = BatchAnswerer(gv, prefetch=prefetch, batch_size=batch_size, stats=stats)
    answerer.text_detector = text_detector
    try:
        return run_jsonl(
            qs,
            out,
            batch_run_spec(answerer),
            shard=shard,
            skip_failed=skip_failed,
            progress=progress,
            settings=settings,
            overwrite=overwrite,
        )
    finally:
        answerer.close()
