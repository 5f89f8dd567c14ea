"""Per-stage cost of GAR-1B for one image and one region, with random weights in the real shape.

The cost of a forward pass does not depend on the weights, so this builds GAR-1B's exact architecture
(no download) and fills it with random numbers: PerceptionLM-1B (PE-Core-L ViT, 23 layers of width 1024
on 448×448 tiles; Llama 3.2-1B-style LLM with 16 layers of width 2048, 32 heads, 8 KV heads, tied
embeddings, llama3 rope) with GAR's vocabulary of 128262 and the 1024-channel mask patch embedding.
The sources of these facts are cited in ``bench/_common.py``, which builds the model.

Stages: preprocessing (tiling the image and mask, prompt text, tokenisation), vision tower (ViT with the
mask embedding + projector for all tiles), RoI replay, prompt embedding, prefill (the whole prompt through
the LLM) and decode (greedy, one token at a time with the KV cache). Peak memory is the process's peak
RSS (and the CUDA peak on GPU). Prints a table and writes JSON.

Usage:
    .venv/bin/python bench/model.py [--device cpu|cuda] [--dtype auto|float32|bfloat16] [--size 640x480]
        [--max-num-tiles 4] [--new-tokens 16] [--threads N] [--out bench/results/model.json]
    # float32 against bfloat16 in one process, interleaved, best of 2 rounds (the --dtype auto evidence):
    .venv/bin/python bench/model.py --dtype float32,bfloat16 --rounds 2 --max-num-tiles 1 --new-tokens 8

The default of 4 tiles (+ thumbnail) keeps the CPU run to a few minutes; vision and prefill costs scale
about linearly with the number of tiles (256 image tokens each), and the JSON reports per-tile and
per-token figures so other tile counts can be estimated.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np
import torch
from _common import (
    add_torch_args,
    command_line,
    device_name,
    gar_1b_config,
    gar_processor,
    peak_rss_mb,
    random_model,
    torch_device,
    write_json,
)

from garvideo.model import build_image_prompt, replay_regions


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn, *args, **kwargs) -> tuple[Any, float]:
    sync(device)
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    sync(device)
    return out, time.perf_counter() - t0


def set_parameter_dtype(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast the parameters (not the buffers: rotary tables stay float32, as ``load_gar`` loads them)."""
    for p in model.parameters():
        p.data = p.data.to(dtype)
    model.tie_weights()


def measure(
    model: Any, processor: Any, image: np.ndarray, mask: np.ndarray, device: torch.device, new_tokens: int
):
    """One image, one region: the stage seconds and the inputs' sizes."""

    def preprocess():
        inputs = processor.preprocess_image(image, [mask])
        ids = processor.tokenize(build_image_prompt(inputs.num_tiles, 1, None, inputs.present))
        return inputs, ids

    with torch.inference_mode():
        # Warm-up on one tile and a short prompt (kernel selection, allocator), not timed.
        model.image_features(torch.zeros(1, 3, 448, 448), torch.zeros(1, 448, 448, dtype=torch.bool))
        model.forward(model.get_input_embeddings()(torch.zeros(1, 8, dtype=torch.long, device=device)))

        (inputs, ids), t_pre = timed(device, preprocess)
        feats, t_vis = timed(
            device, model.encode_image, inputs.pixel_values, inputs.mask_values, inputs.aspect_ratio
        )
        regions, t_roi = timed(device, replay_regions, feats.feature_map, [inputs.boxes[0]], None, "official")
        embeds, t_emb = timed(device, model.embed_prompt, ids, feats.tokens, regions)

        from transformers import DynamicCache

        cache = DynamicCache(config=model.mllm.config.text_config)
        out, t_prefill = timed(device, model.forward, embeds, None, cache, True, 1)
        next_id = out.logits[:, -1].argmax(-1, keepdim=True)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            step = model.forward(model.get_input_embeddings()(next_id), None, cache, True, 1)
            next_id = step.logits[:, -1].argmax(-1, keepdim=True)
        sync(device)
        t_decode = time.perf_counter() - t0
    stages = {
        "preprocessing": t_pre,
        "vision tower (+mask, projector)": t_vis,
        "RoI replay": t_roi,
        "prompt embedding": t_emb,
        "prefill": t_prefill,
        "decode": t_decode,
    }
    return stages, inputs, int(ids.shape[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_torch_args(parser, device="cuda" if torch.cuda.is_available() else "cpu", out="model.json")
    parser.add_argument(
        "--dtype",
        default="auto",
        help="float32, bfloat16 or auto (garvideo's --dtype auto); a comma list (float32,bfloat16) measures "
        "each in turn in one process, --rounds times, and reports the best of the rounds and the ratios",
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds over the dtypes (interleaved)")
    parser.add_argument("--size", default="640x480", help="image WxH")
    parser.add_argument("--max-num-tiles", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()

    from garvideo.model.loading import resolve_dtype

    device = torch_device(args)
    dtypes = [resolve_dtype(d.strip(), device) for d in args.dtype.split(",")]
    w, h = (int(v) for v in args.size.lower().split("x"))

    rss0 = peak_rss_mb()
    config = gar_1b_config()
    model, t_build = timed(device, random_model, config, dtypes[0], device)
    n_params = sum(p.numel() for p in model.parameters())
    processor = gar_processor(args.max_num_tiles)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 4 : h // 2, w // 3 : 2 * w // 3] = True

    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(max(1, args.rounds)):
        for dtype in dtypes:
            set_parameter_dtype(model, dtype)
            stages, inputs, prompt_len = measure(model, processor, image, mask, device, args.new_tokens)
            runs.setdefault(str(dtype).replace("torch.", ""), []).append(stages)
    best = {name: {k: min(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}

    n_tiles = inputs.num_tiles
    print(
        f"GAR-1B (random weights, {n_params / 1e9:.2f} B parameters) on {device_name(device)} "
        f"[{device}, {torch.get_num_threads()} threads], image {w}x{h}, {n_tiles} tiles, {prompt_len} prompt "
        f"tokens, {args.new_tokens} new tokens; best of {max(1, args.rounds)} round(s)"
    )
    names = list(best)
    print(f"{'stage':34s} " + " ".join(f"{n:>10s}" for n in names) + ("   ratio" if len(names) == 2 else ""))
    for stage in best[names[0]]:
        row = f"{stage:34s} " + " ".join(f"{best[n][stage]:10.3f}" for n in names)
        if len(names) == 2:
            row += f"  {best[names[0]][stage] / max(best[names[1]][stage], 1e-9):6.2f}x"
        print(row)
    print(f"{'peak RSS':34s} {peak_rss_mb():10.0f}  MB")

    per_dtype = {}
    for name, st in best.items():
        per_dtype[name] = {
            "stages_seconds": st,
            "vision_seconds_per_tile": st["vision tower (+mask, projector)"] / n_tiles,
            "prefill_tokens_per_second": prompt_len / st["prefill"],
            "decode_tokens_per_second": args.new_tokens / st["decode"],
            "rounds": runs[name],
        }
    result = {
        "model": "GAR-1B architecture, random weights",
        "parameters": n_params,
        "device": str(device),
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "image_size": [w, h],
        "max_num_tiles": args.max_num_tiles,
        "num_tiles": n_tiles,
        "prompt_tokens": prompt_len,
        "new_tokens": args.new_tokens,
        "build_seconds": t_build,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_model_mb": rss0,
        "cuda_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "load_average": list(os.getloadavg()),
        "command": command_line(),
    }
    if len(names) == 1:
        result.update({"dtype": names[0], **per_dtype[names[0]]})
        result.pop("rounds", None)
        key = str(device.type)
    else:
        result["dtypes"] = per_dtype
        result["ratios"] = {
            stage: best[names[0]][stage] / max(best[names[1]][stage], 1e-9) for stage in best[names[0]]
        }
        result["ratios_meaning"] = f"{names[0]} seconds / {names[1]} seconds (above 1: {names[1]} faster)"
        key = f"{device.type}_{'_vs_'.join(names)}"
    if result["cuda_peak_mb"] is not None:
        print(f"{'CUDA peak':34s} {result['cuda_peak_mb']:10.0f}  MB")

    write_json(args.out, result, key=key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
