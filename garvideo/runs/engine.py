"""The question runner: clips prepared ahead in a background thread, questions answered in batches.

:class:`QuestionRunner` answers the items of a :func:`garvideo.runs.loop.run_jsonl` run through the
pipeline's public API (:meth:`GarVideo.prepare`, :meth:`~GarVideo.encode`, :meth:`~GarVideo.ask` /
:meth:`~GarVideo.describe`, :meth:`~GarVideo.run_batch`); batch QA (:mod:`garvideo.runs.batch_qa`), the
evaluator (:mod:`garvideo.eval.videorefer_q`) and the benchmarks subclass it. It overlaps the CPU work with
the model: with ``prefetch=N`` a background thread prepares up to ``N`` clips ahead (opens the video, reads
the masks, tracks, picks and decodes the keyframes) while the calling thread runs the model (keyframe
encoding, prefill, generation) on the current ones; with ``batch_size=B`` the model answers ``B``
consecutive questions at a time (:meth:`GarVideo.run_batch`). Records, their order, resume and errors are
the same as with ``prefetch=0, batch_size=1`` (everything in the calling thread, one question at a time).

This module loads no torch at import (the CLI reads :data:`DEFAULT_PREFETCH` for ``garvideo --help``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from garvideo.errors import InputError
from garvideo.runs.lines import Record
from garvideo.runs.records import answer_timings
from garvideo.video import Video

if TYPE_CHECKING:  # the pipeline imports torch at import
    from garvideo.pipeline import AnswerResult, DescribeResult, GarVideo, PreparedClip, Question

__all__ = [
    "DEFAULT_PREFETCH",
    "QuestionRunner",
    "RunnerStats",
    "answer_questions",
    "ask_question",
    "make_question",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
V = TypeVar("V")

DEFAULT_PREFETCH = 2
"""Clips prepared ahead by default (``prefetch``)."""


def make_question(
    clip: PreparedClip,
    question: str | None,
    options: Sequence[str] | None = None,
    max_new_tokens: int | None = None,
) -> Question:
    """One request for :func:`answer_questions`: a :class:`garvideo.pipeline.Question`."""
    from garvideo.pipeline import Question  # imports torch: kept out of `garvideo --help` (DEFAULT_PREFETCH)

    return Question(
        clip=clip,
        question=question,
        options=list(options) if options is not None else None,
        max_new_tokens=max_new_tokens,
    )


def ask_question(gv: GarVideo, q: Question) -> DescribeResult | AnswerResult:
    """Answer one request with ``gv.describe`` (no question) or ``gv.ask``."""
    if q.question is None:
        return gv.describe(q.clip, max_new_tokens=q.max_new_tokens)
    options = list(q.options) if q.options is not None else None
    return gv.ask(q.clip, q.question, options=options, max_new_tokens=q.max_new_tokens)


def answer_questions(
    gv: GarVideo, questions: Sequence[Question], *, batch_size: int = 1
) -> list[DescribeResult | AnswerResult | Exception]:
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
    out: list[DescribeResult | AnswerResult | Exception] = []
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

    def __init__(self, video: Video, frames: dict[int, np.ndarray]) -> None:
        self._video = video
        self._frames = frames  # frame index -> (H, W, 3) uint8 RGB

    def frames(self, indices: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
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
class _Slot(Generic[V]):
    """A clip of the run: its background preparation, then the prepared value or the error."""

    future: Future[tuple[V | None, Exception | None, float]] | None = None
    value: V | None = None
    error: Exception | None = None
    ready: bool = False
    prepare_s: float = 0.0
    wait_s: float = 0.0
    reported: bool = False

    def prepared(self) -> V:
        """The prepared value; raises the preparation's error."""
        if self.error is not None:
            raise self.error
        assert self.value is not None, "a slot is read once it is ready"
        return self.value


class QuestionRunner(Generic[T, V]):
    """Answers the items of a :func:`garvideo.runs.loop.run_jsonl` run, preparing clips ahead and batching.

    ``T`` is an item of the run, ``V`` what :meth:`prepare_clip` returns for its clip (a
    :class:`~garvideo.pipeline.PreparedClip`, or one with what else the records need; :meth:`clip_of`
    gives the clip). Use it as the run's ``process`` and ``plan`` (:class:`garvideo.runs.loop.JsonlRun`). ``plan`` gives the
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
    :meth:`clip_of`, :meth:`request`, :meth:`record`.
    """

    def __init__(
        self,
        gv: GarVideo,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        batch_size: int = 1,
        stats: RunnerStats | None = None,
    ) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise InputError("prefetch", f"must be an integer >= 0, got {prefetch!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError("batch_size", f"must be an integer >= 1, got {batch_size!r}")
        self.gv = gv
        self.prefetch = prefetch
        self.batch_size = batch_size
        self.stats = stats if stats is not None else RunnerStats()
        self._items: list[T] = []
        self._run_of: list[int] = []  # the clip run (index) of each planned position
        self._run_first: list[int] = []  # first position of each run
        self._run_last: list[int] = []  # last position of each run
        self._pos = 0
        self._outcomes: dict[int, Record | Exception] = {}  # position -> record or exception, answered ahead
        self._slots: dict[int, _Slot[V]] = {}  # run -> its clip
        self._pool: ThreadPoolExecutor | None = None
        self._cancel = threading.Event()

    # -- what subclasses define -------------------------------------------------------------------------
    def clip_key(self, item: T) -> Hashable:
        """Items with equal keys (and next to each other) share one prepared clip."""
        raise NotImplementedError

    def prepare_clip(self, item: T, *, encode: bool, progress: Callable[[int, int], None] | None) -> V:
        """The prepared clip of ``item`` (``encode=False``: not encoded yet); may raise."""
        raise NotImplementedError

    def clip_of(self, value: V) -> PreparedClip:
        """The :class:`garvideo.pipeline.PreparedClip` of a value :meth:`prepare_clip` returned."""
        raise NotImplementedError

    def request(self, item: T, value: V) -> Question:
        """The request (:func:`make_question`) of ``item`` on its prepared clip; may raise."""
        raise NotImplementedError

    def record(
        self, item: T, value: V, result: DescribeResult | AnswerResult, timings: dict[str, float]
    ) -> Record:
        """The output record of ``item`` from its answer."""
        raise NotImplementedError

    # -- the run ---------------------------------------------------------------------------------------
    def plan(self, items: Sequence[T]) -> None:
        """Take the items of the run in processing order (drops what an earlier plan left)."""
        self.close()
        self._items = list(items)
        self._run_of, self._run_first, self._run_last = [], [], []
        last_key: Hashable = None
        for i, it in enumerate(self._items):
            k = self.clip_key(it)
            if i == 0 or k != last_key:
                self._run_first.append(i)
                self._run_last.append(i)
                last_key = k
            self._run_of.append(len(self._run_first) - 1)
            self._run_last[-1] = i
        self._pos = 0

    def __call__(self, item: T) -> Record:
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
        ready: list[tuple[int, _Slot[V], Question]] = []
        for i in positions:
            item = self._items[i]
            try:
                slot = self._clip(self._run_of[i])
                ready.append((i, slot, self.request(item, slot.prepared())))
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
                self._outcomes[i] = self.record(self._items[i], slot.prepared(), result, timings)
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

    def _submit(self, run: int) -> _Slot[V]:
        slot: _Slot[V] = _Slot()
        if self.prefetch > 0:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="garvideo-prepare")
            slot.future = self._pool.submit(self._prepare_ahead, self._items[self._run_first[run]])
        self._slots[run] = slot
        return slot

    def _check_cancel(self, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise _Cancelled("the run was stopped")

    def _prepare_ahead(self, item: T) -> tuple[V | None, Exception | None, float]:
        """Background thread: prepare a clip without encoding it, and decode its keyframes."""
        t0 = time.perf_counter()
        if self._cancel.is_set():
            return None, _Cancelled("the run was stopped"), 0.0
        value: V | None = None
        try:
            self.gv.load(tracker=False)  # the keyframe budget counts with the model's tokenizer and context
            value = self.prepare_clip(item, encode=False, progress=self._check_cancel)
            clip = self.clip_of(value)
            if isinstance(clip.video, Video):  # a file or folder (not a caller's own VideoLike)
                t = time.perf_counter()
                frames = dict(clip.video.frames(list(clip.frames)))
                clip.video = _DecodedKeyframes(clip.video, frames)
                clip.timings["decode"] = clip.timings.get("decode", 0.0) + time.perf_counter() - t
        except Exception as exc:  # noqa: BLE001 - the clip's error, raised for each of its items
            if value is not None:
                self.clip_of(value).close()
            return None, exc, time.perf_counter() - t0
        return value, None, time.perf_counter() - t0

    def _clip(self, run: int) -> _Slot[V]:
        """The prepared (and encoded) clip of ``run``; raises its preparation error."""
        slot = self._slots.get(run) or self._submit(run)
        if not slot.ready:
            value: V | None
            error: Exception | None
            if slot.future is not None:
                t = time.perf_counter()
                value, error, seconds = slot.future.result()
                slot.wait_s = time.perf_counter() - t
                self.stats.wait_s += slot.wait_s
                if value is not None and error is None:
                    t = time.perf_counter()
                    try:
                        self.gv.encode(self.clip_of(value))
                    except Exception as exc:  # noqa: BLE001 - the clip's error
                        self.clip_of(value).close()
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
        slot.prepared()  # raises the clip's error
        return slot

    def _release(self, run: int) -> None:
        slot = self._slots.pop(run, None)
        if slot is None:
            return
        value = slot.value
        if not slot.ready and slot.future is not None and slot.future.done() and not slot.future.cancelled():
            value = slot.future.result()[0]
        if value is not None:
            self.clip_of(value).close()

    def _release_finished(self) -> None:
        """Close the clips whose items are all answered."""
        for run in [r for r in self._slots if self._run_last[r] < self._pos]:
            if all(p not in self._outcomes for p in range(self._run_first[run], self._run_last[run] + 1)):
                self._release(run)
