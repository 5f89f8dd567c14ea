"""Batched requests: many describe / ask questions on prepared clips, generated in batches.

:func:`run_batch` groups the questions by clip (a clip's questions together, clips in order of first
appearance, questions with an equal prompt prefix next to each other), cuts that order into batches of up
to ``batch_size`` and generates each batch at once (:meth:`garvideo.model.GarBundle.generate_from_batch`:
each row continues its clip's prefix KV cache, which is prefilled once per clip and prefix and shared by
the rows). Results come back in input order. A batch of one takes the single-question path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from garvideo.errors import InputError
from garvideo.pipeline.clip import PreparedClip
from garvideo.pipeline.generation import clip_prefix, clip_stage_timings
from garvideo.pipeline.prompt import PromptInputs, check_budget, check_question
from garvideo.pipeline.results import AnswerResult, DescribeResult, build_result, result_fields

if TYPE_CHECKING:
    from garvideo.pipeline.facade import GarVideo

__all__ = ["Question", "run_batch"]

logger = logging.getLogger(__name__)


@dataclass
class Question:
    """One request of :meth:`GarVideo.run_batch`.

    Attributes:
        clip: the prepared clip (:meth:`GarVideo.prepare`).
        question: the question (objects as ``<object0>``, ``<object1>``, …); ``None`` for a describe request.
        options: option texts of a multiple-choice question (lettered A, B, … in order), or ``None``.
        max_new_tokens: generation length (default: the pipeline's).
    """

    clip: PreparedClip
    question: str | None = None
    options: Sequence[str] | None = None
    max_new_tokens: int | None = None


@dataclass
class _Planned:
    """A checked question with its prompt."""

    index: int
    clip: PreparedClip
    question: str | None
    options: list[str] | None
    max_new_tokens: int
    inputs: PromptInputs
    prefix_key: tuple[int, ...]


def _plan(gv: GarVideo, index: int, q: Question) -> _Planned:
    if not isinstance(q, Question):
        raise InputError("questions", f"item {index} is a {type(q).__name__}, not a Question")
    if not isinstance(q.clip, PreparedClip):
        raise InputError("questions", f"item {index}: clip is a {type(q.clip).__name__}, not a PreparedClip")
    options = check_question(q.question, q.options)
    new = gv.max_new_tokens if q.max_new_tokens is None else int(q.max_new_tokens)
    if new < 1:
        raise InputError("--max-new-tokens", f"must be >= 1, got {new}")
    inputs = gv.prompt_inputs(q.clip, q.question, options)
    check_budget(inputs, new, gv.context_length(), "describe" if q.question is None else "--question")
    key = tuple(inputs.input_ids[0, : inputs.prefix_length].tolist())
    return _Planned(index, q.clip, q.question, options, new, inputs, key)


def batch_order(planned: Sequence[_Planned]) -> list[_Planned]:
    """Clips in order of first appearance; within a clip, equal prefixes together (first appearance);
    otherwise input order."""
    clip_rank: dict[int, int] = {}
    prefix_rank: dict[tuple[int, tuple[int, ...]], int] = {}
    for p in planned:
        clip_rank.setdefault(id(p.clip), len(clip_rank))
        prefix_rank.setdefault((id(p.clip), p.prefix_key), len(prefix_rank))
    return sorted(
        planned, key=lambda p: (clip_rank[id(p.clip)], prefix_rank[(id(p.clip), p.prefix_key)], p.index)
    )


def run_batch(
    gv: GarVideo, questions: Sequence[Question], *, batch_size: int = 8
) -> list[DescribeResult | AnswerResult]:
    """The work of :meth:`GarVideo.run_batch`."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError("--batch-size", f"must be a positive integer, got {batch_size!r}")
    planned = [_plan(gv, i, q) for i, q in enumerate(questions)]  # every question checked before any work
    results: list[DescribeResult | AnswerResult | None] = [None] * len(planned)
    order = batch_order(planned)
    bundle = gv.bundle
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        prefill: dict[int, float] = {}
        prefixes = []
        for p in batch:
            gv.encode(p.clip)
            cache, seconds = clip_prefix(bundle, p.clip, p.inputs)
            prefixes.append(cache)
            prefill[p.index] = seconds
        suffixes = [p.inputs.input_ids[:, p.inputs.prefix_length :] for p in batch]
        t0 = time.perf_counter()
        if len(batch) == 1:
            gens = [bundle.generate_from(prefixes[0], suffixes[0], max_new_tokens=batch[0].max_new_tokens)]
        else:
            gens = bundle.generate_from_batch(
                prefixes, suffixes, max_new_tokens=[p.max_new_tokens for p in batch]
            )
        share = (time.perf_counter() - t0) / len(batch)
        logger.debug("batch of %d generated in %.2fs", len(batch), share * len(batch))
        for p, gen in zip(batch, gens):
            timings = _batch_timings(p.clip, {"prefill": prefill[p.index], "generation": share})
            fields = result_fields(
                p.clip, gv.model_name, gen.text, p.inputs.length, gen.num_tokens, timings, gv.model_dtype
            )
            results[p.index] = build_result(fields, p.question, p.options)
    return [r for r in results if r is not None]


def _batch_timings(clip: PreparedClip, run: dict[str, float]) -> dict[str, float]:
    """Stage timings of one batched request: the clip's own stages (decode, tracking, vision) on the first
    request reported for the clip (then 0), its prefill, and its share of the batch's generation time;
    ``total`` is their sum."""
    out = clip_stage_timings(clip)
    out.update(run)
    out["total"] = sum(out.values())
    return out
