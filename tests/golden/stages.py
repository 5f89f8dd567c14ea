"""garvideo's side of the golden parity cases: every compared stage, as full tensors.

Used by ``tests/test_model_golden_parity.py`` and by ``tools/make_golden.py`` (its comparison table).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from garvideo.model import (
    build_image_prompt,
    build_video_prompt,
    format_multiple_choice,
    mask_box,
    replay_regions,
)

from . import cases as C


def run_case(
    bundle: Any,
    kind: str,
    images: list[np.ndarray],
    masks: list[np.ndarray],
    *,
    pixel_values: torch.Tensor | None = None,
    mask_values: torch.Tensor | None = None,
) -> dict[str, Any]:
    """All stages of one case on garvideo's side.

    ``pixel_values`` / ``mask_values`` replace garvideo's preprocessing (to feed the official tiles to
    garvideo's model); by default garvideo preprocesses.

    Returns:
        ``pixel_values``, ``mask_values`` (bool union), ``mask_embeds``, ``image_features``,
        ``region_tokens`` ``(R, 256, D)``, ``input_ids`` (list), ``inputs_embeds`` ``(L, D)``, ``logits`` (last position, ``(V,)``),
        ``tokens`` (greedy, list).
    """
    model, proc = bundle.model, bundle.processor
    if kind == C.VIDEO:
        inputs = proc.preprocess_frames(images, masks)
        pv = inputs.pixel_values if pixel_values is None else pixel_values
        mv = inputs.mask_values if mask_values is None else mask_values
        with torch.inference_mode():
            feats = model.encode_frames(pv, mv)
            present = [[bool(m.any()) for m in masks]]
            boxes = [mask_box(m) for m in masks]
            regions = replay_regions(feats.maps, boxes, list(range(len(masks))), "official")
            ids = proc.tokenize(build_video_prompt(len(images), present, None))
            tokens = feats.tokens
    else:
        inputs = proc.preprocess_image(images[0], masks)
        pv = inputs.pixel_values if pixel_values is None else pixel_values
        mv = inputs.mask_values if mask_values is None else mask_values
        question = None
        if kind == C.MC1:
            question = format_multiple_choice(C.MC1_QUESTION, list(C.MC1_OPTIONS))
        elif kind == C.MC2:
            question = format_multiple_choice(C.MC2_QUESTION, list(C.MC2_OPTIONS))
        with torch.inference_mode():
            feats = model.encode_image(pv, mv, inputs.aspect_ratio)
            boxes = [b for b in inputs.boxes if b is not None]
            regions = replay_regions(feats.feature_map, boxes, None, "official")
            ids = proc.tokenize(build_image_prompt(inputs.num_tiles, len(masks), question, inputs.present))
            tokens = feats.tokens
    with torch.inference_mode():
        mask_embeds = model.mask_embeddings(mv)
        embeds = model.embed_prompt(ids, tokens, regions)
        logits = model.forward(embeds, logits_to_keep=1).logits[0, -1].float()
        out = model.generate(
            embeds,
            max_new_tokens=C.MAX_NEW_TOKENS,
            eos_token_id=proc.eos_token_id,
            pad_token_id=proc.pad_token_id,
        )
    return {
        "pixel_values": pv.float(),
        "mask_values": mv.bool(),
        "mask_embeds": mask_embeds.float(),
        "image_features": tokens.float(),
        "region_tokens": regions.float(),
        "input_ids": ids.reshape(-1).tolist(),
        "inputs_embeds": embeds[0].float(),
        "logits": logits,
        "tokens": out.reshape(-1).tolist(),
    }


def weights_sha256(folder: Any) -> str:
    """SHA-256 over the sorted keys and float32 bytes of a model folder's ``model.safetensors``."""
    import hashlib
    from pathlib import Path

    from safetensors.torch import load_file

    state = load_file(str(Path(folder) / "model.safetensors"))
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].float().numpy().tobytes())
    return h.hexdigest()
