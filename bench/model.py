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
    .venv/bin/python bench/model.py [--device cpu|cuda] [--dtype float32|bfloat16] [--size 640x480]
        [--max-num-tiles 4] [--new-tokens 16] [--threads N] [--out bench/results/model.json]

The default of 4 tiles (+ thumbnail) keeps the CPU run to a few minutes; vision and prefill costs scale
about linearly with the number of tiles (256 image tokens each), and the JSON reports per-tile and
per-token figures so other tile counts can be estimated.
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_torch_args(parser, device="cuda" if torch.cuda.is_available() else "cpu", out="model.json")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    parser.add_argument("--size", default="640x480", help="image WxH")
    parser.add_argument("--max-num-tiles", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()

    device = torch_device(args)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, None: None}[args.dtype]
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    w, h = (int(v) for v in args.size.lower().split("x"))

    rss0 = peak_rss_mb()
    config = gar_1b_config()
    model, t_build = timed(device, random_model, config, dtype, device)
    n_params = sum(p.numel() for p in model.parameters())
    processor = gar_processor(args.max_num_tiles)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 4 : h // 2, w // 3 : 2 * w // 3] = True

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
        for _ in range(args.new_tokens):
            step = model.forward(model.get_input_embeddings()(next_id), None, cache, True, 1)
            next_id = step.logits[:, -1].argmax(-1, keepdim=True)
        sync(device)
        t_decode = time.perf_counter() - t0

    n_tiles = inputs.num_tiles
    prompt_len = int(ids.shape[1])
    stages = [
        (
            "preprocessing",
            t_pre,
            f"{n_tiles} tiles ({inputs.aspect_ratio[0]}x{inputs.aspect_ratio[1]} + thumbnail)",
        ),
        ("vision tower (+mask, projector)", t_vis, f"{t_vis / n_tiles:.3f} s per tile"),
        ("RoI replay", t_roi, "1 region, 256 tokens"),
        ("prompt embedding", t_emb, f"{prompt_len} tokens"),
        ("prefill", t_prefill, f"{prompt_len / t_prefill:.1f} tokens/s"),
        ("decode", t_decode, f"{args.new_tokens / t_decode:.2f} tokens/s ({args.new_tokens} tokens)"),
    ]
    result = {
        "model": "GAR-1B architecture, random weights",
        "parameters": n_params,
        "device": str(device),
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(dtype).replace("torch.", ""),
        "image_size": [w, h],
        "max_num_tiles": args.max_num_tiles,
        "num_tiles": n_tiles,
        "prompt_tokens": prompt_len,
        "new_tokens": args.new_tokens,
        "build_seconds": t_build,
        "stages_seconds": {name: t for name, t, _ in stages},
        "vision_seconds_per_tile": t_vis / n_tiles,
        "prefill_tokens_per_second": prompt_len / t_prefill,
        "decode_tokens_per_second": args.new_tokens / t_decode,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_model_mb": rss0,
        "cuda_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "command": command_line(),
    }

    print(
        f"GAR-1B (random weights, {n_params / 1e9:.2f} B parameters) on {result['device_name']} "
        f"[{device}, {result['dtype']}, {result['torch_threads']} threads], image {w}x{h}"
    )
    print(f"{'stage':34s} {'seconds':>9s}  note")
    for name, t, note in stages:
        print(f"{name:34s} {t:9.3f}  {note}")
    print(f"{'peak RSS':34s} {result['peak_rss_mb']:9.0f}  MB")
    if result["cuda_peak_mb"] is not None:
        print(f"{'CUDA peak':34s} {result['cuda_peak_mb']:9.0f}  MB")

    write_json(args.out, result, key=str(device.type))
    return 0


if __name__ == "__main__":
    sys.exit(main())
