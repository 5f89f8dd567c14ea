"""The fields of an output line: answer records, error records' reason, timings.

Batch QA's lines are :func:`answer_record` (keys :data:`ANSWER_KEYS`); the evaluator's prediction lines
end with the same :func:`answer_fields`. A failed item's ``error`` is :func:`error_text` of what it raised.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from garvideo.errors import InputError

if TYPE_CHECKING:  # the pipeline imports torch; these modules only read its results
    from garvideo.pipeline.results import AnswerResult, DescribeResult

__all__ = ["ANSWER_KEYS", "answer_fields", "answer_record", "answer_timings", "error_text"]

ANSWER_KEYS = ("id", "answer", "pred", "frames", "error", "notes", "timings")
"""The keys of a batch QA output line, in order."""


def error_text(exc: BaseException) -> str:
    """The one-line reason recorded for a failed item (an :class:`InputError` reads as its message)."""
    if isinstance(exc, InputError):
        return str(exc)
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def answer_timings(
    prepare_s: float,
    result: DescribeResult | AnswerResult,
    t0: float,
    *,
    wait_s: float | None = None,
    items: int = 1,
) -> dict[str, float]:
    """Seconds per stage of one answer.

    Args:
        prepare_s: opening the clip, reading the masks, tracking and encoding (0 for the later questions
            of a shared clip).
        result: the answer; its own stages are copied as the pipeline reports them (the clip's
            ``decode`` / ``tracking`` / ``vision`` on its first question, ``prefill``, ``generation``).
        t0: :func:`time.perf_counter` when answering started.
        wait_s: with prefetching, how long the model waited for this clip to be prepared.
        items: questions answered together (``total`` is the wall time since ``t0`` divided by it).

    Returns:
        ``prepare``, ``wait`` (when given), the result's stages, ``total``.
    """
    timings: dict[str, float] = {"prepare": prepare_s}
    if wait_s is not None:
        timings["wait"] = wait_s
    timings.update({k: float(v) for k, v in (result.timings or {}).items() if k != "total"})
    timings["total"] = (time.perf_counter() - t0) / max(1, items)
    return timings


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
    qid: str | int,
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
