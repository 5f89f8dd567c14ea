"""Generation of one request: the clip's prefix KV cache, the suffix, decoding and stage timings.

The request's prompt comes from :func:`~garvideo.pipeline.prompt.build_prompt_inputs` and its budget is
checked by :meth:`~garvideo.pipeline.budget.TokenBudget.check_request` before :func:`run_request` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from garvideo.errors import InputError
from garvideo.pipeline.prepared import PreparedClip
from garvideo.pipeline.prompt import PromptInputs

if TYPE_CHECKING:
    from garvideo.model import GarBundle, GenerationResult, PrefixCache

__all__ = ["StreamFn", "clip_prefix", "clip_stage_timings", "request_timings", "run_request"]

#: Prefix caches kept per clip (one per distinct prefix: e.g. describe and ask of a single object).
_MAX_PREFIX_CACHES = 2

StreamFn = Callable[[str], None]


def clip_prefix(bundle: GarBundle, clip: PreparedClip, inputs: PromptInputs) -> tuple[PrefixCache, float]:
    """The KV cache of the prompt prefix (from the clip's cache when an equal prefix was run) and the
    seconds spent prefilling it (0 when cached).

    Args:
        bundle: the model that encoded ``clip``.
        clip: an encoded clip (:func:`~garvideo.pipeline.encoding.encode_clip`).
        inputs: the request's prompt on ``clip``.

    Raises:
        InputError: the clip is not encoded.
    """
    # Keyed by the features' model/settings key too: a cache never outlives the features it came from.
    key = (clip.cache_key, *inputs.input_ids[0, : inputs.prefix_length].tolist())
    cached = clip.prefix_caches.get(key)
    if cached is not None:
        clip.prefix_caches.move_to_end(key)
        return cached, 0.0
    feats = clip.features
    if feats is None:
        raise InputError(clip.source, "the prepared clip is not encoded")
    t0 = time.perf_counter()
    embeds = bundle.embed_prompt(inputs.input_ids[:, : inputs.prefix_length], feats.tokens, clip.regions)
    cache = bundle.prefill(embeds)  # (1, P, D) -> KV cache
    clip.prefix_caches[key] = cache
    while len(clip.prefix_caches) > _MAX_PREFIX_CACHES:
        clip.prefix_caches.popitem(last=False)
    return cache, time.perf_counter() - t0


def run_request(
    bundle: GarBundle,
    clip: PreparedClip,
    inputs: PromptInputs,
    *,
    max_new_tokens: int,
    stream: StreamFn | None = None,
    generate_kwargs: Mapping[str, Any] | None = None,
) -> tuple[GenerationResult, dict[str, float]]:
    """Prefill (or reuse) the prompt prefix of ``inputs`` on the encoded ``clip`` and generate the answer.

    Args:
        bundle: the model that encoded ``clip``.
        clip: an encoded clip.
        inputs: the request's prompt (budget already checked).
        max_new_tokens: the request's new tokens.
        stream: called with each new piece of text.
        generate_kwargs: passed to generation (greedy unless ``do_sample=True``).

    Returns:
        The generation and the seconds of its stages (``prefill``, ``generation``).

    Raises:
        InputError: the clip is not encoded.
    """
    prefix, prefill_s = clip_prefix(bundle, clip, inputs)
    suffix_ids = inputs.input_ids[:, inputs.prefix_length :]  # (1, S): the text after the last region token
    t0 = time.perf_counter()
    gen = bundle.generate_from(
        prefix, suffix_ids, on_text=stream, max_new_tokens=max_new_tokens, **dict(generate_kwargs or {})
    )
    gen_s = time.perf_counter() - t0
    return gen, {"prefill": prefill_s, "generation": gen_s}


def clip_stage_timings(clip: PreparedClip) -> dict[str, float]:
    """The clip's own stages (``decode``, ``tracking``, ``vision``) for the first request reported on it,
    then zeros: work shared by the clip's requests is counted once."""
    first = not clip.timings_reported
    clip.timings_reported = True
    return {k: (clip.timings.get(k, 0.0) if first else 0.0) for k in ("decode", "tracking", "vision")}


def request_timings(clip: PreparedClip, t_call: float, run: dict[str, float]) -> dict[str, float]:
    """Stage timings of one request. The clip's own stages (decode, tracking, vision) are reported
    by the first request on it (then 0: shared work is counted once); ``total`` adds the clip's
    preparation time to this call's when it is reported here."""
    first = not clip.timings_reported
    out = clip_stage_timings(clip)
    out.update(run)
    call = time.perf_counter() - t_call
    # prepare() inside this call is already part of `call`; a clip prepared earlier is added once.
    prepared_here = clip.prepared_at >= t_call
    out["total"] = call + (clip.timings.get("prepare", 0.0) if first and not prepared_here else 0.0)
    return out
