"""Run VideoRefer-Bench-Q with garvideo, writing predictions the official scorer reads unchanged.

The benchmark file (DAMO-NLP-SG/VideoRefer, ``benchmark/README.md``, "VideoRefer-Bench-Q") is a JSON
list of records::

    {"id": 0, "video": "DAVIS/JPEGImages/480p/aerobatics",
     "Question": "What is <object3><region> not wearing?", "type": "Basic Questions",
     "options": ["(A) A helmet", "(B) A hat", ...], "Answer": "(A) A helmet", "frame_idx": "57",
     "annotation": [{"0": {"segmentation": <COCO RLE>}, "3": {...}, ...}]}

* ``video`` is a frame folder under the video root; annotation frame keys index the sorted listing of
  that folder (the official loader reads frames by those indices:
  ``videorefer/eval/inference_videorefer_q_bench.py``, ``VideoRefer_Bench_Q.__getitem__``).
* ``annotation`` holds one dict per object, in the order the objects appear in ``Question``; the
  official loader pairs the k-th mask with the k-th ``<region>`` (same file). garvideo maps the k-th
  distinct ``<objectN>`` of the question to ``<object{k}>`` and to ``annotation[k]``.
* A value (or its ``segmentation``) of ``null`` means the object is absent on that frame; the
  official loader uses an all-zero mask there.
* ``single`` mode (the standard zero-shot protocol; the official ``--mode single``) gives only the
  masks at ``frame_idx`` and lets the tracker propagate them; ``multi`` gives every annotated mask on
  its frame and keyframes come from the annotated frames.

Each prediction line has the official keys ``video``, ``Answer``, ``pred``, ``type`` (as
``inference_videorefer_q_bench.py:run_inference`` writes them, so ``eval_videorefer_bench_q.py`` runs
on the file unchanged) and garvideo's ``id``, ``mode``, ``frames``, ``error``, ``notes``, ``timings``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import string
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from garvideo.errors import InputError, PathLike
from garvideo.eval.scoring import (
    QUESTION_TYPES,
    Scores,
    recorded_settings,
    score_records,
    scores_paths,
    write_scores,
)
from garvideo.masks import rle_decode
from garvideo.runs.engine import DEFAULT_PREFETCH, QuestionRunner, RunnerStats, make_question
from garvideo.runs.lines import read_jsonl, record_key
from garvideo.runs.loop import JsonlRun, Progress, RunSummary, run_jsonl
from garvideo.runs.merge import MergeResult, merge_shards
from garvideo.runs.records import answer_fields, error_text
from garvideo.runs.settings import RunSettings, build_run_settings
from garvideo.runs.shards import Shard, find_parts, resolve_shard
from garvideo.video import open_video

if TYPE_CHECKING:  # the pipeline imports torch at import; the checks before a run do not need it
    from garvideo.pipeline import AnswerResult, DescribeResult, GarVideo, PreparedClip, Question

logger = logging.getLogger(__name__)

MODES = ("single", "multi")
PREDICTION_KEYS = ("video", "Answer", "pred", "type", "id", "mode", "frames", "error", "notes", "timings")
"""The keys of a prediction line, in order: the official four first."""

_OBJECT_RE = re.compile(r"<object(\d+)>(\s*<region>)?")
_OPTION_RE = re.compile(r"^\s*\(([A-Z])\)\s*(.*?)\s*$", re.DOTALL)


# ----------------------------------------------------------------------------------------------------
# the benchmark file
# ----------------------------------------------------------------------------------------------------
def load_benchmark(path: PathLike) -> list[dict[str, Any]]:
    """Read a VideoRefer-Bench-Q JSON file (checked before any work starts).

    Only what every record needs to be recorded at all is checked here (an object with a unique
    ``id``); everything else is checked per record by :func:`parse_record`, so one bad record fails
    alone.

    Raises:
        InputError: missing file, malformed JSON, not a list, a record that is not an object or has
            no usable ``id``, duplicate ids.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such benchmark file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(p, f"not a valid JSON file ({exc})") from None
    if not isinstance(data, list):
        raise InputError(p, f"expected a JSON list of records, got {type(data).__name__}")
    seen: dict[str, int] = {}
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise InputError(p, f"record {i} is not a JSON object")
        rid = rec.get("id")
        if isinstance(rid, bool) or not isinstance(rid, (int, str)) or rid == "":
            raise InputError(p, f"record {i} has no usable 'id' (got {rid!r})")
        k = record_key(rid)
        if k in seen:
            raise InputError(p, f"id {rid!r} appears in records {seen[k]} and {i}")
        seen[k] = i
    return data


def select_records(
    records: Sequence[dict[str, Any]], *, types: Sequence[str] | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The records of the given types (all if ``None``), the first ``limit`` of them (all if ``None``).

    Raises:
        InputError: an unknown type name or a negative limit.
    """
    out = list(records)
    if types:
        unknown = [t for t in types if t not in QUESTION_TYPES]
        if unknown:
            raise InputError("types", f"unknown type {unknown[0]!r} (known: {', '.join(QUESTION_TYPES)})")
        wanted = set(types)
        out = [r for r in out if r.get("type") in wanted]
    if limit is not None:
        if limit < 0:
            raise InputError("limit", f"must be >= 0, got {limit}")
        out = out[:limit]
    return out


@dataclass(frozen=True)
class BenchQuestion:
    """A checked benchmark record.

    Attributes:
        id: the record's ``id``.
        video: ``video`` as in the file (written back to the prediction).
        video_dir: the frame folder (video root / ``video``).
        type: the question type (one of :data:`garvideo.eval.scoring.QUESTION_TYPES`).
        question: the question for :meth:`GarVideo.ask`, objects as ``<object0>``, ``<object1>``, …
        object_tags: the record's own object tags in that order (``<object3>`` …).
        options: the option texts, without their ``(A)`` labels, in letter order.
        answer: ``Answer`` as in the file.
        frame_idx: ``frame_idx`` as an integer.
        annotation: per object, ``{frame: COCO RLE | None}`` sorted by frame.
    """

    id: Any
    video: str
    video_dir: Path
    type: str
    question: str
    object_tags: tuple[str, ...]
    options: tuple[str, ...]
    answer: str
    frame_idx: int
    annotation: tuple[dict[int, dict[str, Any] | None], ...]

    def clip_key(self, mode: str) -> Hashable:
        """Records with equal keys share one prepared clip (same video, same masks used).

        ``multi`` uses every annotated mask, so the whole annotation is the key. ``single`` uses only
        the masks at ``frame_idx`` when every object has a non-empty one there (then records that
        differ elsewhere, e.g. by a ``null`` on another frame, still share); otherwise the frame
        :func:`record_masks` picks depends on the whole annotation, which is then the key.
        """
        used: Any = [{str(t): v for t, v in a.items()} for a in self.annotation]
        if mode == "single" and self._masks_at_frame_idx():
            used = [a[self.frame_idx] for a in self.annotation]
        digest = hashlib.sha1(json.dumps(used, sort_keys=True).encode()).hexdigest()
        return (str(self.video_dir), mode, self.frame_idx if mode == "single" else None, digest)

    def _masks_at_frame_idx(self) -> bool:
        """Every object has a decodable, non-empty mask at ``frame_idx``."""
        for a in self.annotation:
            rle = a.get(self.frame_idx)
            if rle is None:
                return False
            try:
                if not rle_decode(rle).any():
                    return False
            except InputError:
                return False
        return True


def _segmentation(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping) and "segmentation" in value:
        value = value["segmentation"]
        if value is None:
            return None
    if not isinstance(value, Mapping) or "counts" not in value or "size" not in value:
        raise InputError(where, "malformed COCO RLE (expected {'segmentation': {'size', 'counts'}} or null)")
    return dict(value)


def parse_record(raw: Mapping[str, Any], video_root: PathLike) -> BenchQuestion:
    """Check one benchmark record and turn it into a :class:`BenchQuestion`.

    Raises:
        InputError: (source ``record <id>``) an unknown type, malformed options or ``frame_idx``, an
            annotation list whose length does not match the objects of the question, a malformed
            annotation entry. (A missing video folder, frame keys beyond it and undecodable RLEs are
            found when the clip is prepared.)
    """
    where = f"record {raw.get('id')}"

    def need_str(key: str) -> str:
        v = raw.get(key)
        if not isinstance(v, str) or not v.strip():
            raise InputError(where, f"'{key}' must be a non-empty string, got {v!r}")
        return v

    video = need_str("video")
    qtype = need_str("type")
    if qtype not in QUESTION_TYPES:
        raise InputError(where, f"unknown type {qtype!r} (known: {', '.join(QUESTION_TYPES)})")
    question = need_str("Question")
    answer = need_str("Answer")

    # options: "(A) text", lettered A, B, ... in order
    opts = raw.get("options")
    if not isinstance(opts, list) or len(opts) < 2 or not all(isinstance(o, str) for o in opts):
        raise InputError(where, "'options' must be a list of at least 2 strings")
    texts = []
    for i, o in enumerate(opts):
        m = _OPTION_RE.match(o)
        if not m or m.group(1) != string.ascii_uppercase[i]:
            raise InputError(where, f"option {i} is {o!r}; expected '({string.ascii_uppercase[i]}) ...'")
        texts.append(m.group(2))

    # objects: the k-th distinct <objectN> is <object{k}> and annotation[k]
    tags: list[str] = []
    for m in _OBJECT_RE.finditer(question):
        if m.group(1) not in tags:
            tags.append(m.group(1))
    if not tags:
        raise InputError(where, "the question refers to no <objectN>")
    gar_question = _OBJECT_RE.sub(lambda m: f"<object{tags.index(m.group(1))}>", question)
    if "<region>" in gar_question:
        raise InputError(where, "the question has a <region> that follows no <objectN>")

    fi = raw.get("frame_idx")
    frame_idx = -1
    if isinstance(fi, int) and not isinstance(fi, bool):
        frame_idx = fi
    elif isinstance(fi, str) and fi.strip().isdigit():
        frame_idx = int(fi)
    if frame_idx < 0:
        raise InputError(where, f"'frame_idx' must be a non-negative integer string, got {fi!r}")

    ann = raw.get("annotation")
    if not isinstance(ann, list):
        raise InputError(where, "'annotation' must be a list (one dict per object)")
    if len(ann) != len(tags):
        raise InputError(where, f"'annotation' has {len(ann)} objects but the question refers to {len(tags)}")
    annotation = []
    for k, per_obj in enumerate(ann):
        if not isinstance(per_obj, Mapping) or not per_obj:
            raise InputError(where, f"annotation[{k}] must be a non-empty dict of frame -> mask")
        frames: dict[int, dict[str, Any] | None] = {}
        for key, value in per_obj.items():
            try:
                t = int(key)
                if t < 0:
                    raise ValueError
            except (TypeError, ValueError):
                raise InputError(
                    where, f"annotation[{k}] has a frame key {key!r} that is not an index"
                ) from None
            frames[t] = _segmentation(value, f"{where}: annotation[{k}][{key}]")
        annotation.append(dict(sorted(frames.items())))

    return BenchQuestion(
        id=raw["id"],
        video=video,
        video_dir=Path(video_root) / video,
        type=qtype,
        question=gar_question,
        object_tags=tuple(f"<object{t}>" for t in tags),
        options=tuple(texts),
        answer=answer,
        frame_idx=frame_idx,
        annotation=tuple(annotation),
    )


# ----------------------------------------------------------------------------------------------------
# masks for a mode
# ----------------------------------------------------------------------------------------------------
@dataclass
class RecordMasks:
    """What :meth:`GarVideo.prepare` gets for a record.

    Attributes:
        masks: ``single``: one bool ``(H, W)`` mask per object, on ``frame``.
        frame: ``single``: the frame of ``masks``.
        frame_masks: ``multi``: per object, ``{frame: mask | None}``.
        notes: what was changed from the record (e.g. another frame than ``frame_idx``).
    """

    masks: list[np.ndarray] | None = None
    frame: int = 0
    frame_masks: list[dict[int, np.ndarray | None]] | None = None
    notes: list[str] = field(default_factory=list)


def _decode(rle: dict[str, Any] | None, size: tuple[int, int], where: str) -> np.ndarray | None:
    if rle is None:
        return None
    m = rle_decode(rle, source=where, size=size)
    return m if m.any() else None


def check_frame_keys(q: BenchQuestion, num_frames: int) -> None:
    """Check that ``frame_idx`` and every annotation frame key index one of the clip's ``num_frames``.

    Raises:
        InputError: a key at or beyond ``num_frames``.
    """
    where = f"record {q.id}"
    for k, ann in enumerate(q.annotation):
        beyond = [t for t in ann if t >= num_frames]
        if beyond:
            raise InputError(
                where,
                f"annotation[{k}] has frame key {beyond[0]} beyond the {num_frames} frames of {q.video}",
            )
    if q.frame_idx >= num_frames:
        raise InputError(where, f"frame_idx {q.frame_idx} is beyond the {num_frames} frames of {q.video}")


def record_masks(q: BenchQuestion, mode: str, num_frames: int, size: tuple[int, int]) -> RecordMasks:
    """Decode the masks a record gives in ``mode`` for a clip of ``num_frames`` frames of ``size``.

    ``single``: the masks at ``frame_idx``. When an object has no mask there (``null``, empty, or no
    such key), the nearest frame (earlier first on a tie) where every object has a mask is used
    instead, and a note says so. ``multi``: every annotated mask on its frame (``null`` and empty
    masks mean absent).

    Raises:
        InputError: a frame key at or beyond ``num_frames``, a malformed RLE or one of another size,
            no frame where every object has a mask (``single``), an object with no mask at all.
    """
    if mode not in MODES:
        raise InputError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    where = f"record {q.id}"
    check_frame_keys(q, num_frames)
    if mode == "multi":
        fms = []
        for k, ann in enumerate(q.annotation):
            fm = {t: _decode(rle, size, f"{where}: annotation[{k}][{t}]") for t, rle in ann.items()}
            if all(v is None for v in fm.values()):
                raise InputError(where, f"object {k} has no non-empty mask on any frame")
            fms.append(fm)
        return RecordMasks(frame_masks=fms)

    common = sorted(
        set.intersection(*(set(a) for a in q.annotation)), key=lambda t: (abs(t - q.frame_idx), t)
    )
    if q.frame_idx not in common:
        common.insert(0, q.frame_idx)
    for t in common:
        if not all(t in a and a[t] is not None for a in q.annotation):
            continue
        decoded = [_decode(a[t], size, f"{where}: annotation[{k}][{t}]") for k, a in enumerate(q.annotation)]
        masks = [m for m in decoded if m is not None]
        if len(masks) < len(decoded):  # an object's mask is empty here
            continue
        notes = []
        if t != q.frame_idx:
            notes.append(
                f"no mask for every object at frame_idx {q.frame_idx}; used the nearest annotated frame {t}"
            )
        return RecordMasks(masks=masks, frame=t, notes=notes)
    raise InputError(where, "no annotated frame has a non-empty mask for every object")


# ----------------------------------------------------------------------------------------------------
# predictions
# ----------------------------------------------------------------------------------------------------
def prediction_record(
    raw: Mapping[str, Any],
    *,
    mode: str,
    pred: str,
    frames: Sequence[int] = (),
    error: str | None = None,
    notes: Sequence[str] = (),
    timings: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """One prediction line (keys :data:`PREDICTION_KEYS`, in order) for benchmark record ``raw``."""
    return {
        "video": raw.get("video"),
        "Answer": raw.get("Answer"),
        "pred": pred,
        "type": raw.get("type"),
        "id": raw.get("id"),
        "mode": mode,
        **answer_fields(frames, error, notes, timings),
    }


_Prepared = tuple["PreparedClip", list[str]]
"""A record's prepared clip and the notes of its masks (:attr:`RecordMasks.notes`)."""


class VideoReferAnswerer(QuestionRunner[Mapping[str, Any], _Prepared]):
    """Answers benchmark records with a :class:`garvideo.pipeline.GarVideo` (``gv``) in ``mode``.

    Consecutive records on the same clip and masks reuse one prepared clip; see
    :class:`garvideo.runs.engine.QuestionRunner` for ``prefetch`` and ``batch_size``.
    """

    def __init__(
        self,
        gv: GarVideo,
        video_root: PathLike,
        mode: str = "single",
        *,
        prefetch: int = DEFAULT_PREFETCH,
        batch_size: int = 1,
        stats: RunnerStats | None = None,
    ) -> None:
        super().__init__(gv, prefetch=prefetch, batch_size=batch_size, stats=stats)
        self.video_root = Path(video_root)
        self.mode = mode
        self._group = _group_key(mode, self.video_root)

    def clip_key(self, item: Mapping[str, Any]) -> Hashable:
        return self._group(item)

    def clip_of(self, value: _Prepared) -> PreparedClip:
        return value[0]

    def prepare_clip(
        self, item: Mapping[str, Any], *, encode: bool, progress: Callable[[int, int], None] | None
    ) -> _Prepared:
        q = parse_record(item, self.video_root)
        if not q.video_dir.is_dir():
            raise InputError(f"record {q.id}", f"no such video folder {q.video_dir}")
        video = open_video(q.video_dir)
        try:
            rm = record_masks(q, self.mode, video.num_frames, (video.height, video.width))
            if rm.masks is not None:
                clip = self.gv.prepare(
                    video, masks=rm.masks, frame=rm.frame, encode=encode, progress=progress
                )
            else:
                clip = self.gv.prepare(video, frame_masks=rm.frame_masks, encode=encode, progress=progress)
        except BaseException:
            video.close()
            raise
        return clip, rm.notes

    def request(self, item: Mapping[str, Any], value: _Prepared) -> Question:
        q = parse_record(item, self.video_root)
        check_frame_keys(q, value[0].num_frames)  # this record's own keys, also when the clip is shared
        return make_question(value[0], q.question, q.options)

    def record(
        self,
        item: Mapping[str, Any],
        value: _Prepared,
        result: DescribeResult | AnswerResult,
        timings: dict[str, float],
    ) -> dict[str, Any]:
        return prediction_record(
            item,
            mode=self.mode,
            pred=str(result.text),
            frames=list(result.frames),
            notes=list(value[1]) + list(result.notes or []),
            timings=timings,
        )


def _group_key(mode: str, video_root: Path) -> Callable[[Mapping[str, Any]], Hashable]:
    def key(raw: Mapping[str, Any]) -> Hashable:
        try:
            return parse_record(raw, video_root).clip_key(mode)
        except InputError:
            return ("bad record", record_key(raw["id"]))

    return key


def run_settings(gv: GarVideo, *, mode: str, data: PathLike | None = None) -> RunSettings:
    """The settings recorded beside the predictions (and shown with their scores): those of ``gv``
    (:func:`garvideo.runs.settings.pipeline_settings`) and the benchmark ``mode``; the data file and
    the tracker's selection reason are recorded, not compared."""
    info: dict[str, Any] = {}
    if data is not None:
        info["data"] = str(data)
    reason = gv.tracker_reason
    if reason is not None:
        info["tracker_reason"] = reason
    return build_run_settings(gv, info=info, mode=mode)


def plan_run(
    data: PathLike,
    video_root: PathLike,
    *,
    mode: str = "single",
    limit: int | None = None,
    types: Sequence[str] | None = None,
    shard: str | Shard | None = None,
) -> list[dict[str, Any]]:
    """Check a run's inputs and options (before any model work) and return the records it covers.

    Raises:
        InputError: an unknown mode or type, a bad ``shard``, a missing video root, a malformed
            benchmark file, or no record left after ``types`` / ``limit``.
    """
    if mode not in MODES:
        raise InputError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    resolve_shard(shard)
    if not Path(video_root).is_dir():
        raise InputError(video_root, "no such video root folder")
    records = select_records(load_benchmark(data), types=types, limit=limit)
    if not records:
        raise InputError(data, "no records to run (check types / limit)")
    check_first_video(records, video_root)
    return records


def check_first_video(records: Sequence[Mapping[str, Any]], video_root: PathLike) -> None:
    """Refuse a video root under which the first record's ``video`` does not exist (before any work,
    instead of failing every record).

    Raises:
        InputError: naming ``video_root``.
    """
    first = records[0]
    video = first.get("video")
    if isinstance(video, str) and video.strip() and not (Path(video_root) / video).exists():
        raise InputError(
            "video_root",
            f"the video of the first record (id {first.get('id')!r}), {video!r}, is not under "
            f"{video_root}; it must be the folder the records' 'video' paths start from",
        )


@dataclass
class EvalResult:
    """The outcome of :func:`run_videorefer_q`.

    Attributes:
        summary: the JSONL run (this rank's part when sharded).
        scores: the table of this run's output file.
        scores_files: the ``.scores.json`` and ``.scores.md`` written next to it.
        merged_scores: when this rank found every part finished and merged them, the table of the
            merged file (also written next to it).
    """

    summary: RunSummary
    scores: Scores
    scores_files: tuple[Path, Path]
    merged_scores: Scores | None = None


def run_videorefer_q(
    data: PathLike,
    video_root: PathLike,
    out: PathLike,
    gv: GarVideo,
    *,
    mode: str = "single",
    limit: int | None = None,
    types: Sequence[str] | None = None,
    shard: str | Shard | None = None,
    skip_failed: bool = False,
    progress: Callable[[Progress], None] | None = None,
    settings: RunSettings | None = None,
    prefetch: int = DEFAULT_PREFETCH,
    batch_size: int = 1,
    stats: RunnerStats | None = None,
    overwrite: bool = False,
) -> EvalResult:
    """Answer the benchmark's questions with ``gv`` and score them.

    Args:
        data: ``VideoRefer-Bench-Q.json``.
        video_root: the folder the records' ``video`` paths are under.
        out: the predictions JSONL (``OUT.part-I-of-N.jsonl`` per rank when sharded). A rerun resumes
            when the settings recorded beside it (``<stem>.settings.json``) are this run's.
        gv: a :class:`garvideo.pipeline.GarVideo`.
        mode: ``"single"`` (masks at ``frame_idx``, tracked) or ``"multi"`` (all annotated masks).
        limit: only the first ``limit`` records (after ``types``).
        types: only these question types.
        shard: ``"I/N"``, a :class:`garvideo.runs.shards.Shard`, or ``None`` (torchrun's env, else unsharded).
        skip_failed: keep records whose earlier prediction has an error (by default they are redone).
        progress: called after each record.
        settings: recorded beside the predictions and shown with the scores (default
            :func:`run_settings`).
        prefetch: clips prepared ahead in a background thread (0: everything in this thread).
        batch_size: questions answered together (batched generation).
        stats: filled in with where the time went (:class:`garvideo.runs.engine.RunnerStats`).
        overwrite: start afresh even when ``out`` holds predictions (its scores files are removed too).

    Raises:
        InputError: a malformed benchmark file, an unknown mode or type, a missing video root.
        SettingsMismatch: ``out`` holds predictions made with other settings (and not ``overwrite``).
    """
    records = plan_run(data, video_root, mode=mode, limit=limit, types=types, shard=shard)
    if settings is None:
        settings = run_settings(gv, mode=mode, data=data)
    if overwrite:
        for p in scores_paths(resolve_shard(shard).part_path(out)):
            p.unlink(missing_ok=True)
    answerer = VideoReferAnswerer(gv, video_root, mode, prefetch=prefetch, batch_size=batch_size, stats=stats)
    spec: JsonlRun[dict[str, Any]] = JsonlRun(
        key=lambda r: r["id"],
        process=answerer,
        on_error=lambda r, exc: prediction_record(r, mode=mode, pred="", error=error_text(exc)),
        group=answerer.clip_key,
        plan=answerer.plan,
    )
    try:
        summary = run_jsonl(
            records,
            out,
            spec,
            shard=shard,
            skip_failed=skip_failed,
            progress=progress,
            settings=settings,
            overwrite=overwrite,
        )
    finally:
        answerer.close()
    scores = score_records(read_jsonl(summary.out).records, recorded_settings(summary.out))
    files = write_scores(scores, summary.out)
    merged_scores = None
    if summary.merged is not None:
        merged_scores = score_records(read_jsonl(summary.merged).records, recorded_settings(summary.merged))
        write_scores(merged_scores, summary.merged)
    return EvalResult(summary=summary, scores=scores, scores_files=files, merged_scores=merged_scores)


def merge_outputs(out: PathLike, *, allow_partial: bool = False) -> tuple[MergeResult, Scores | None]:
    """Merge the parts of a sharded batch or eval run into ``out`` (see :func:`garvideo.runs.merge.merge_shards`).

    When the parts are VideoRefer-Bench-Q predictions, the merged file is scored too and its
    ``.scores.json`` / ``.scores.md`` written, labelled with the parts' recorded settings (parts with
    different settings are not merged). With
    ``allow_partial``, incomplete parts are merged and the scores are marked partial (``missing``).
    """
    parts = find_parts(out)
    result = merge_shards(out, parts, allow_partial=allow_partial)
    records = read_jsonl(result.out).records
    if not records or not all(k in r for r in records for k in ("Answer", "pred", "type")):
        return result, None
    scores = score_records(records, recorded_settings(result.out))
    scores.missing = result.missing
    write_scores(scores, result.out)
    return result, scores


__all__ = [
    "MODES",
    "PREDICTION_KEYS",
    "BenchQuestion",
    "EvalResult",
    "RecordMasks",
    "VideoReferAnswerer",
    "check_first_video",
    "check_frame_keys",
    "load_benchmark",
    "merge_outputs",
    "parse_record",
    "plan_run",
    "prediction_record",
    "record_masks",
    "run_settings",
    "run_videorefer_q",
    "select_records",
]
