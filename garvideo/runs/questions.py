"""Batch QA's questions file: one JSON object per line, parsed and checked before any work.

Input, one JSON object per line::

    {"id": "q1", "video": "clips/dog.mp4", "mask": "masks/dog_00000.png", "frame": 0,
     "question": "What is <object0> doing?", "options": ["running", "sleeping"]}

* ``id`` (string or integer, unique) and ``video`` (a file or a frame folder) and ``question``;
* objects either as ``mask`` — a mask file, or a list of them, each file giving one or more objects
  (see :func:`garvideo.masks.load_mask`) — on frame ``frame`` (default 0), tracked through the clip,
  and/or ``points`` / ``box`` (SAM 2) / ``text`` (SAM 3's detector, ``text_pick``) on that frame;
  or as ``masks`` — per object, a map from frame index to a mask file or a COCO RLE (or ``null``:
  absent on that frame), used as given;
* optional ``options``: the option texts, lettered ``A``, ``B``, … in order.

Relative paths are resolved against the questions file's folder (or ``root``). A line whose fields are
wrong is kept with :attr:`BatchQuestion.problem` (recorded as that question's error); a line without a
usable ``id`` stops the run before it starts (:func:`plan_batch_qa`: every check made before the model
loads). Answering the file: :mod:`garvideo.runs.batch_qa` (which imports the pipeline; this module does not).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from garvideo.errors import InputError, PathLike
from garvideo.runs.lines import read_jsonl, record_key
from garvideo.runs.outputs import check_output
from garvideo.runs.shards import Shard, resolve_shard
from garvideo.trackers import parse_box, parse_points

__all__ = [
    "BatchQuestion",
    "MaskSpec",
    "check_first_video",
    "load_questions",
    "parse_question",
    "plan_batch_qa",
]

MaskSpec = Path | dict[str, Any] | None
"""A per-frame mask of the ``masks`` form: a mask file, a COCO RLE, or ``None`` (absent on that frame)."""


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

    id: str | int
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


def _check_id(value: Any, where: str) -> str | int:
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

    Args:
        obj: the line's JSON object.
        base: the folder relative ``video`` / ``mask`` paths are resolved against.
        line: its line number (for the messages).

    Returns:
        The :class:`BatchQuestion`.

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
    object). Points are kept as ``"x,y,label;…"`` text, checked with the trackers' parser."""
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


def check_first_video(qs: Sequence[BatchQuestion], questions: PathLike, root: PathLike | None) -> None:
    """Refuse a run whose first answerable question's video does not exist (a wrong ``root`` or a
    questions file moved away from its clips) before any work, instead of failing every question.

    Args:
        qs: the questions (:func:`load_questions`).
        questions: the questions file.
        root: the folder their relative paths were resolved against (``None``: the file's folder).

    Raises:
        InputError: naming ``root`` (when given) or the questions file.
    """
    first = next((q for q in qs if q.problem is None and q.video is not None), None)
    if first is None or first.video is None or first.video.exists():
        return
    if root is not None:
        raise InputError(
            "root",
            f"the video of the first question (id {first.id!r}), {first.video}, does not exist under "
            f"{root}; it must be the folder the questions' relative paths start from",
        )
    raise InputError(
        f"{questions}:{first.line}",
        f"the video of the first question (id {first.id!r}), {first.video}, does not exist (relative "
        "paths start from the questions file's folder, or from root when one is given)",
    )


def plan_batch_qa(
    questions: PathLike, out: PathLike, *, root: PathLike | None = None, shard: str | Shard | None = None
) -> list[BatchQuestion]:
    """Check a batch run's files and options (before any model work) and read its questions.

    Args:
        questions: the questions file.
        out: the answers file.
        root: where relative paths are resolved (default: the questions file's folder).
        shard: ``"I/N"``, a :class:`~garvideo.runs.shards.Shard`, or ``None``.

    Returns:
        The questions (:func:`load_questions`).

    Raises:
        InputError: ``out`` is the questions file, a bad ``shard``, a missing first video, an output that
            cannot be written, or what :func:`load_questions` raises.
        OutputLocked: another process is writing ``out``.
    """
    if Path(questions).resolve() == Path(out).resolve():
        raise InputError("out", "is the questions file itself; write the answers to another file")
    resolve_shard(shard)
    qs = load_questions(questions, root=root)
    check_first_video(qs, questions, root)
    check_output(out, shard)
    return qs
