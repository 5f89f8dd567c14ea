"""Generation of one request: the clip's prefix KV cache, the suffix, greedy decoding and stage timings."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from garvideo.errors import InputError
from garvideo.pipeline.clip import PreparedClip
from garvideo.pipeline.prompt import PromptInputs, check_budget

if TYPE_CHECKING:
    from garvideo.pipeline.facade import GarVideo

__all__ = ["StreamFn", "clip_prefix", "clip_stage_timings", "request_timings", "run_request"]

#: Prefix caches kept per clip (one per distinct prefix: e.g. describe and ask of a single object).
_MAX_PREFIX_CACHES = 2

StreamFn = Callable[[str], None]


def clip_prefix(bundle: Any, clip: PreparedClip, inputs: PromptInputs) -> tuple[Any, float]:
    """The KV cache of the prompt prefix (from the clip's cache when an equal prefix was run) and the
    seconds spent prefilling it (0 when cached)."""
    # Keyed by the features' model/settings key too: a cache never outlives the features it came from.
    key = (clip.cache_key, *inputs.input_ids[0, : inputs.prefix_length].tolist())
    cached = clip.prefix_caches.get(key)
    if cached is not None:
        clip.prefix_caches.move_to_end(key)
        return cached, 0.0
    t0 = time.perf_counter()
    feats = clip.features
    embeds = bundle.embed_prompt(inputs.input_ids[:, : inputs.prefix_length], feats.tokens, clip.regions)
    cache = bundle.prefill(embeds)  # (1, P, D) -> KV cache
    clip.prefix_caches[key] = cache
    while len(clip.prefix_caches) > _MAX_PREFIX_CACHES:
        clip.prefix_caches.popitem(last=False)
    return cache, time.perf_counter() - t0


def run_request(
    gv: GarVideo,
    clip: PreparedClip,
    question: str | None,
    options: Sequence[str] | None,
    stream: StreamFn | None,
    max_new_tokens: int | None,
    generate_kwargs: dict[str, Any],
    source: str,
) -> tuple[Any, PromptInputs, dict[str, float]]:
    """Encode (if needed), assemble, check the budget, prefill (or reuse) the prefix and generate."""
    new = gv.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
    if new < 1:
        raise InputError("--max-new-tokens", f"must be >= 1, got {new}")
    gv.encode(clip)
    inputs = gv.prompt_inputs(clip, question, options)
    check_budget(inputs, new, gv.context_length(), source)
    prefix, prefill_s = clip_prefix(gv.bundle, clip, inputs)
    suffix_ids = inputs.input_ids[:, inputs.prefix_length :]
    t0 = time.perf_counter()
    gen = gv.bundle.generate_from(prefix, suffix_ids, on_text=stream, max_new_tokens=new, **generate_kwargs)
    gen_s = time.perf_counter() - t0
    return gen, inputs, {"prefill": prefill_s, "generation": gen_s}


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
