"""Batched requests: many describe / ask questions on prepared clips, generated in batches.

:func:`answer_batch` (the work of :meth:`GarVideo.run_batch`) groups the questions by clip (a clip's questions together, clips in order of first
appearance, questions with an equal prompt prefix next to each other), cuts that order into batches of up
to ``batch_size`` and generates each batch at once (:meth:`garvideo.model.GarBundle.generate_from_batch`:
each row continues its clip's prefix KV cache, which is prefilled once per clip and prefix and shared by
the rows). Results come back in input order. A batch of one takes the single-question path.

Per row, as the batch runs (the hooks ``garvideo serve`` answers concurrent requests with): a question's
``stream`` gets its text as its row produces it; ``on_result`` gets each row's result as soon as the row
has ended (rows that end early leave the batch); a ``stream`` that raises stops its row only, and with
``return_exceptions=True`` each question's error is its entry of the result list.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from garvideo.errors import InputError
from garvideo.pipeline.budget import TokenBudget
from garvideo.pipeline.encoding import encode_clip
from garvideo.pipeline.generation import StreamFn, clip_prefix, clip_stage_timings
from garvideo.pipeline.prepared import PreparedClip
from garvideo.pipeline.prompt import PromptInputs, build_prompt_inputs, check_question
from garvideo.pipeline.results import AnswerResult, DescribeResult, build_result, result_fields
from garvideo.pipeline.settings import PipelineSettings

if TYPE_CHECKING:
    from garvideo.model import GarBundle, GenerationResult, PrefixCache

__all__ = ["Question", "ResultFn", "answer_batch"]

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
    stream: StreamFn | None = None
    """Called with each new piece of this question's text as its row produces it (as ``stream=`` of
    :meth:`GarVideo.describe`); an exception it raises stops this row only (e.g. a client gone away)."""


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
    stream: StreamFn | None = None


def _plan(
    bundle: GarBundle, index: int, q: Question, settings: PipelineSettings, budget: TokenBudget
) -> _Planned:
    """Check question ``index`` and build its prompt (nothing is generated)."""
    if not isinstance(q, Question):
        raise InputError("questions", f"item {index} is a {type(q).__name__}, not a Question")
    if not isinstance(q.clip, PreparedClip):
        raise InputError("questions", f"item {index}: clip is a {type(q.clip).__name__}, not a PreparedClip")
    options = check_question(q.question, q.options)
    new = settings.with_overrides(max_new_tokens=q.max_new_tokens).max_new_tokens
    inputs = build_prompt_inputs(bundle, q.clip, q.question, options)
    budget.check_request(inputs.length, new, "max_new_tokens" if q.question is None else "question")
    key = tuple(inputs.input_ids[0, : inputs.prefix_length].tolist())
    return _Planned(index, q.clip, q.question, options, new, inputs, key, q.stream)


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


Outcome = DescribeResult | AnswerResult | BaseException
"""A question's result (:class:`DescribeResult` / :class:`AnswerResult`) or its error."""
ResultFn = Callable[[int, Any], None]
"""``on_result(index, outcome)``: a question's :data:`Outcome`."""


def answer_batch(
    bundle: GarBundle,
    questions: Sequence[Question],
    *,
    settings: PipelineSettings,
    budget: TokenBudget,
    batch_size: int = 8,
    return_exceptions: bool = False,
    on_result: ResultFn | None = None,
) -> list[Any]:
    """Answer ``questions`` on their prepared clips, up to ``batch_size`` generated at once (the work of
    :meth:`GarVideo.run_batch`, which documents the batching and the results).

    Args:
        bundle: the loaded model (clips not yet encoded by it are encoded with ``settings.roi_mode``).
        questions: the requests.
        settings: the default ``max_new_tokens`` and the RoI mode.
        budget: the context each prompt plus its new tokens must fit.
        batch_size: the most questions generated at once.
        return_exceptions: ``False``: a bad question raises before any generation, and an error during a
            batch (a ``stream`` that raised included) is raised when that batch ends. ``True``: each
            question's error is its entry of the list (the others are answered), as ``asyncio.gather``.
        on_result: ``on_result(index, result_or_exception)`` for each question, as soon as its outcome is
            known (a row that ends early is reported before its batch ends), in the calling thread.

    Returns:
        One outcome per question, in input order (an exception only with ``return_exceptions=True``).

    Raises:
        InputError: ``batch_size < 1``, a bad question, a prompt over the context.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError("batch_size", f"must be a positive integer, got {batch_size!r}")
    outcomes: list[Any] = [None] * len(questions)
    done = [False] * len(questions)

    def finish(index: int, outcome: Outcome) -> None:
        if done[index]:
            return
        done[index] = True
        outcomes[index] = outcome
        if on_result is not None:
            on_result(index, outcome)

    planned: list[_Planned] = []
    failed: list[tuple[int, BaseException]] = []
    for i, q in enumerate(questions):  # every question checked before any work
        try:
            planned.append(_plan(bundle, i, q, settings, budget))
        except Exception as exc:
            if not return_exceptions:
                raise
            failed.append((i, exc))
    for i, error in failed:
        finish(i, error)
    order = batch_order(planned)
    for start in range(0, len(order), batch_size):
        _run_one_batch(bundle, settings.roi_mode, order[start : start + batch_size], finish)
        if not return_exceptions:
            errors = [outcomes[p.index] for p in order[start : start + batch_size]]
            first = next((e for e in errors if isinstance(e, BaseException)), None)
            if first is not None:
                raise first
    return outcomes


def _run_one_batch(
    bundle: GarBundle, roi_mode: str, batch: Sequence[_Planned], finish: Callable[[int, Outcome], None]
) -> None:
    """Generate one batch; every row's outcome (result or exception) goes to ``finish`` as it is known."""
    rows: list[_Planned] = []
    prefixes: list[PrefixCache] = []
    prefill: dict[int, float] = {}
    for p in batch:
        try:
            encode_clip(bundle, p.clip, roi_mode)
            cache, seconds = clip_prefix(bundle, p.clip, p.inputs)
        except Exception as exc:  # noqa: BLE001 - this row's outcome
            finish(p.index, exc)
            continue
        rows.append(p)
        prefixes.append(cache)
        prefill[p.index] = seconds
    if not rows:
        return
    suffixes = [p.inputs.input_ids[:, p.inputs.prefix_length :] for p in rows]  # (1, S_i) each
    n = len(rows)

    def result(p: _Planned, gen: GenerationResult, generation_s: float) -> DescribeResult | AnswerResult:
        timings = _batch_timings(p.clip, {"prefill": prefill[p.index], "generation": generation_s})
        fields = result_fields(p.clip, bundle, gen, p.inputs.length, timings)
        return build_result(fields, p.question, p.options)

    t0 = time.perf_counter()
    if n == 1:
        p = rows[0]
        try:
            gen = bundle.generate_from(
                prefixes[0], suffixes[0], on_text=p.stream, max_new_tokens=p.max_new_tokens
            )
        except Exception as exc:  # noqa: BLE001 - this row's outcome (e.g. its stream raised)
            finish(p.index, exc)
            return
        finish(p.index, result(p, gen, time.perf_counter() - t0))
        return

    streamers = [None if p.stream is None else bundle.text_streamer(p.stream) for p in rows]
    tokens: list[list[int]] = [[] for _ in rows]

    def on_token(r: int, token: int, last: bool) -> bool:
        tokens[r].append(token)
        p, streamer = rows[r], streamers[r]
        try:
            if streamer is not None:
                streamer.put(torch.tensor([token]))
                if last:
                    streamer.end()
        except Exception as exc:  # noqa: BLE001 - the row's stream stopped it (e.g. the client went away)
            finish(p.index, exc)
            return False
        if last:
            # The row's share of the batch's generation time so far (all rows' shares add up to it).
            elapsed = time.perf_counter() - t0
            finish(p.index, result(p, bundle.generation_result(tokens[r], elapsed), elapsed / n))
        return True

    try:
        bundle.generate_from_batch(
            prefixes, suffixes, max_new_tokens=[p.max_new_tokens for p in rows], on_token=on_token
        )
    except Exception as exc:  # noqa: BLE001 - the batch failed: every row still running gets the error
        for p in rows:
            finish(p.index, exc)
    logger.debug("batch of %d generated in %.2fs", n, time.perf_counter() - t0)


def _batch_timings(clip: PreparedClip, run: dict[str, float]) -> dict[str, float]:
    """Stage timings of one batched request: the clip's own stages (decode, tracking, vision) on the first
    request reported for the clip (then 0), its prefill, and its share of the batch's generation time (the
    time until its row ended over the batch's rows: equal shares when the rows end together);
    ``total`` is their sum."""
    out = clip_stage_timings(clip)
    out.update(run)
    out["total"] = sum(out.values())
    return out
