"""Batch video QA: answer a questions file (:mod:`garvideo.runs.questions`) with :class:`GarVideo`.

Output, one line per question (:func:`garvideo.runs.records.answer_record`): ``id``, ``answer`` (the
option letter for a multiple-choice question, else the answer text), ``pred`` (the raw model output),
``frames`` (the keyframes used), ``error`` (``null`` or why the item failed), ``notes``, ``timings``
(seconds); ``text`` (what SAM 3's detector found) for questions with ``text`` objects. Runs are resumable
and shardable (:func:`garvideo.runs.loop.run_jsonl`; a clip's questions stay on one rank); the run's
settings are recorded beside the answers (``<stem>.settings.json``, :mod:`garvideo.runs.settings`) and a
rerun resumes only with the same ones. Questions on the same clip and masks are processed one after the
other on one prepared clip, so tracking, frame encoding and the prompt prefix are computed once for all of
them; :class:`BatchAnswerer` is a :class:`~garvideo.runs.engine.QuestionRunner` (``prefetch``,
``batch_size``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from garvideo.errors import InputError, PathLike
from garvideo.masks import load_mask, load_masks, rle_decode
from garvideo.pipeline import AnswerResult, DescribeResult, GarVideo, PreparedClip, Question
from garvideo.runs.engine import DEFAULT_PREFETCH, QuestionRunner, RunnerStats, make_question
from garvideo.runs.lines import Record
from garvideo.runs.loop import JsonlRun, Progress, RunSummary, run_jsonl
from garvideo.runs.questions import BatchQuestion, MaskSpec, plan_batch_qa
from garvideo.runs.records import answer_record, error_text
from garvideo.runs.settings import RunSettings, build_run_settings, text_settings
from garvideo.runs.shards import Shard
from garvideo.trackers import build_prompts, masks_from_prompts
from garvideo.trackers.text import TextDetection, TextDetector, text_prompts
from garvideo.video import open_video

__all__ = [
    "BatchAnswerer",
    "batch_run_spec",
    "error_record",
    "prepare_question_clip",
    "run_batch_qa",
]


def _load_spec(spec: MaskSpec, size: tuple[int, int], where: str) -> np.ndarray | None:
    """One per-frame mask of the ``masks`` form as a bool ``(H, W)`` array (``None``: absent)."""
    if spec is None:
        return None
    if isinstance(spec, Path):
        masks = load_mask(spec, size, allow_empty=True)
        if len(masks) != 1:
            raise InputError(spec, f"holds {len(masks)} objects; a per-frame mask file must hold one")
        return masks[0]
    return rle_decode(spec, source=where, size=size)


def prepare_question_clip(
    gv: GarVideo,
    q: BatchQuestion,
    *,
    encode: bool = True,
    progress: Callable[[int, int], None] | None = None,
    text_detector: TextDetector | None = None,
    found: list[TextDetection] | None = None,
) -> PreparedClip:
    """Open ``q``'s video, read its masks and ``gv.prepare`` the clip (tracking and, with ``encode``,
    the keyframe features); ``progress`` is passed on to the tracking.

    ``q.texts`` are found on ``q.frame`` by ``text_detector`` (a :class:`garvideo.trackers.text.TextDetector`,
    :func:`garvideo.trackers.text.text_prompts`); their :class:`~garvideo.trackers.text.TextDetection` are
    appended to ``found`` when given.

    Raises:
        InputError: a bad question; ``NoTextMatchError`` for a text with no candidate above the threshold.
    """
    if q.problem is not None:
        raise InputError(f"id {q.id}", q.problem)
    if q.texts and text_detector is None:
        raise InputError(f"id {q.id}", "has 'text' but the run has no SAM 3 text detector")
    assert q.video is not None, "a question without a problem has its video"
    video = open_video(q.video)
    try:
        size = (video.height, video.width)
        if q.mask_files is not None:
            masks = load_masks(q.mask_files, size)
            if q.points or q.boxes:  # SAM 2 segments the clicks and boxes on the prompt frame
                prompts = build_prompts(masks, q.points, q.boxes, q.frame)
                masks = masks_from_prompts(gv.tracker, video, prompts)
            if q.texts:
                assert text_detector is not None  # checked above
                if not 0 <= q.frame < video.num_frames:
                    raise InputError(
                        f"id {q.id}", f"'frame' {q.frame} is past the clip's {video.num_frames} frames"
                    )
                text_found, dets = text_prompts(
                    text_detector, video, q.texts, frame=q.frame, first_id=len(masks) + 1, picks=q.text_picks
                )
                masks = list(masks)
                for p in text_found:  # each found text is one more object, by its mask on q.frame
                    assert p.mask is not None, "a text prompt carries its mask"
                    masks.append(p.mask)
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


class BatchAnswerer(QuestionRunner[BatchQuestion, "_TextPrepared"]):
    """Answers :class:`BatchQuestion` items with a :class:`garvideo.pipeline.GarVideo` (``gv``).

    Consecutive questions on the same clip key reuse one prepared clip (tracking, keyframe features
    and the prompt prefix's KV cache); see :class:`QuestionRunner` for ``prefetch`` and ``batch_size``.
    """

    def __init__(
        self,
        gv: GarVideo,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        batch_size: int = 1,
        stats: RunnerStats | None = None,
        text_detector: TextDetector | None = None,
    ) -> None:
        super().__init__(gv, prefetch=prefetch, batch_size=batch_size, stats=stats)
        #: SAM 3's concept detector for questions with ``text`` (``None``: such questions fail with a clear error).
        self.text_detector = text_detector

    def clip_key(self, item: BatchQuestion) -> Hashable:
        return item.clip_key()

    def prepare_clip(
        self, item: BatchQuestion, *, encode: bool, progress: Callable[[int, int], None] | None
    ) -> _TextPrepared:
        found: list[TextDetection] = []
        clip = prepare_question_clip(
            self.gv, item, encode=encode, progress=progress, text_detector=self.text_detector, found=found
        )
        return _TextPrepared(clip, tuple(found))

    def clip_of(self, value: _TextPrepared) -> PreparedClip:
        return value.clip

    def request(self, item: BatchQuestion, value: _TextPrepared) -> Question:
        return make_question(value.clip, item.question, item.options)

    def record(
        self,
        item: BatchQuestion,
        value: _TextPrepared,
        result: DescribeResult | AnswerResult,
        timings: dict[str, float],
    ) -> Record:
        text = str(result.text)
        letter = result.letter if isinstance(result, AnswerResult) else None  # a question: an AnswerResult
        rec = answer_record(
            item.id,
            answer=letter if item.options else text,
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

    clip: PreparedClip
    found: tuple[TextDetection, ...] = ()


def error_record(q: BatchQuestion, exc: BaseException) -> Record:
    """The output line of a question that failed (a text with no match: ``error`` lists the best scores)."""
    return answer_record(q.id, answer=None, pred="", error=error_text(exc))


def batch_run_spec(answer: Callable[[BatchQuestion], Record]) -> JsonlRun[BatchQuestion]:
    """The :class:`garvideo.runs.loop.JsonlRun` of batch QA with an answering function (a
    :class:`~garvideo.runs.engine.QuestionRunner` also gets the plan of the run)."""
    return JsonlRun(
        key=lambda q: q.id,
        process=answer,
        on_error=error_record,
        group=lambda q: q.clip_key(),
        plan=answer.plan if isinstance(answer, QuestionRunner) else None,
    )


def run_batch_qa(
    questions: Sequence[BatchQuestion] | PathLike,
    out: PathLike,
    gv: GarVideo,
    *,
    root: PathLike | None = None,
    shard: str | Shard | None = None,
    skip_failed: bool = False,
    progress: Callable[[Progress], None] | None = None,
    prefetch: int = DEFAULT_PREFETCH,
    batch_size: int = 1,
    stats: RunnerStats | None = None,
    settings: RunSettings | None = None,
    overwrite: bool = False,
    text_detector: TextDetector | None = None,
) -> RunSummary:
    """Answer every question not yet in ``out`` (resumable, sharded; see :func:`garvideo.runs.loop.run_jsonl`).

    Args:
        questions: the parsed questions, or the questions JSONL file.
        out: the answers JSONL (``OUT.part-I-of-N.jsonl`` per rank when sharded).
        gv: a :class:`garvideo.pipeline.GarVideo`.
        root: where relative paths of a questions file are resolved (default: its folder).
        shard: ``"I/N"``, a :class:`garvideo.runs.shards.Shard`, or ``None`` (torchrun's env, else unsharded).
        skip_failed: keep questions whose earlier record has an error (by default they are redone).
        progress: called after each question.
        prefetch: clips prepared ahead in a background thread (0: everything in this thread).
        batch_size: questions answered together (batched generation).
        stats: filled in with where the time went (:class:`RunnerStats`).
        settings: the :class:`garvideo.runs.settings.RunSettings` recorded with the answers (default:
            those of ``gv``, :func:`garvideo.runs.settings.build_run_settings`).
        overwrite: start afresh even when ``out`` holds answers (made with other settings or not).
        text_detector: a :class:`garvideo.trackers.text.TextDetector` for questions with ``text`` (its
            threshold and checkpoint join the default ``settings``, :func:`garvideo.runs.settings.text_settings`).

    Returns:
        The run's :class:`~garvideo.runs.loop.RunSummary`.

    Raises:
        InputError: see :func:`~garvideo.runs.questions.plan_batch_qa` (a questions file); a bad
            ``prefetch`` / ``batch_size``.
        SettingsMismatch: ``out`` holds answers made with other settings (and not ``overwrite``).
        OutputLocked: another process is writing ``out``.
    """
    if isinstance(questions, (str, os.PathLike)):
        qs = plan_batch_qa(questions, out, root=root, shard=shard)
    else:
        qs = list(questions)
    if settings is None:
        settings = build_run_settings(gv, **text_settings(text_detector))
    answerer = BatchAnswerer(
        gv, prefetch=prefetch, batch_size=batch_size, stats=stats, text_detector=text_detector
    )
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
