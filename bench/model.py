"""Per-stage cost of GAR-1B for one image and one region, with random weights in the real shape.

The cost of a forward pass does not depend on the weights, so this builds GAR-1B's exact architecture
(no download) and fills it with random numbers: PerceptionLM-1B (PE-Core-L ViT, 23 layers of width 1024
on 448×448 tiles; Llama 3.2-1B-style LLM with 16 layers of width 2048, 32 heads, 8 KV heads, tied
embeddings, llama3 rope) with GAR's vocabulary of 128262 and the 1024-channel mask patch embedding.
Facts: PLM-1B's ``config.json`` on the hub (``text_config``) and transformers'
``convert_perception_lm_weights_to_hf.py`` (vision: 23 layers, width 1024, image 448, patch 14,
``ls_init_value`` 0.1, no post-norm); GAR adds 6 tokens (``convert_to_hf.py``:
``vocab_size = len(tokenizer)``). GAR-1B was trained with at most 16 tiles (``configs/gar_1b.py``).

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
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from garvideo.model import GarConfig, GarModel, build_image_prompt, replay_regions
from garvideo.model.modeling import _parameters_on_meta
from garvideo.model.processing import GarProcessor
from garvideo.model.tiny import build_tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def gar_1b_config_dict() -> dict[str, Any]:
    """GAR-1B's ``config.json`` content that matters for the architecture (see the module docstring)."""
    return {
        "mllm_config": {
            "vision_config": {
                "model_type": "timm_wrapper",
                "architecture": "vit_pe_core_large_patch14_336",
                "do_pooling": False,
                "num_labels": 0,
                "model_args": {
                    "embed_dim": 1024,
                    "depth": 23,
                    "img_size": [448, 448],
                    "global_pool": "",
                    "use_post_transformer_norm": False,
                    "init_values": 0.1,
                    "ref_feat_shape": [32, 32],
                },
            },
            "text_config": {
                "model_type": "llama",
                "hidden_size": 2048,
                "intermediate_size": 8192,
                "num_hidden_layers": 16,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "head_dim": 64,
                "hidden_act": "silu",
                "max_position_embeddings": 11520,
                "rms_norm_eps": 1e-5,
                "rope_theta": 500000.0,
                "rope_scaling": {
                    "factor": 32.0,
                    "high_freq_factor": 4.0,
                    "low_freq_factor": 1.0,
                    "original_max_position_embeddings": 8192,
                    "rope_type": "llama3",
                },
                "tie_word_embeddings": True,
                "vocab_size": 128262,
                "bos_token_id": 128000,
                "eos_token_id": [128001, 128009],
            },
            "projector_pooling_ratio": 2,
            "vision_use_cls_token": True,
            "image_token_id": 128002,
            "video_token_id": 128003,
        },
        "prompt_numbers": 5,
        "crop_tokens_ids": [128004, 128005, 128008, 128010, 128011],
    }


def random_model(config: GarConfig, dtype: torch.dtype, device: torch.device) -> GarModel:
    """GarModel with parameters drawn from N(0, 0.02) (norm weights 1), built without a full init pass."""
    with _parameters_on_meta():
        model = GarModel(config)
    gen = torch.Generator(device="cpu").manual_seed(0)
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None or p.device.type != "meta":
                continue
            t = torch.empty(p.shape, dtype=torch.float32)
            if name == "weight" and p.dim() == 1:
                t.fill_(1.0)
            elif name == "bias" or "gamma" in name:
                t.fill_(0.0 if name == "bias" else 0.1)
            else:
                t.normal_(0.0, 0.02, generator=gen)
            module._parameters[name] = nn.Parameter(t.to(dtype), requires_grad=False)
    model = model.to(device=device, dtype=dtype)
    model.tie_weights()
    return model.eval()


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


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
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    parser.add_argument("--size", default="640x480", help="image WxH")
    parser.add_argument("--max-num-tiles", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model.json")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, None: None}[args.dtype]
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    w, h = (int(v) for v in args.size.lower().split("x"))

    rss0 = peak_rss_mb()
    config = GarConfig.from_dict(gar_1b_config_dict())
    model, t_build = timed(device, random_model, config, dtype, device)
    n_params = sum(p.numel() for p in model.parameters())
    from transformers import PerceptionLMImageProcessor

    processor = GarProcessor(
        PerceptionLMImageProcessor(max_num_tiles=args.max_num_tiles, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        build_tiny_tokenizer(),
    )
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
        ("preprocessing", t_pre, f"{n_tiles} tiles ({inputs.aspect_ratio[0]}x{inputs.aspect_ratio[1]} + thumbnail)"),
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
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
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
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }

    print(f"GAR-1B (random weights, {n_params / 1e9:.2f} B parameters) on {result['device_name']} "
          f"[{device}, {result['dtype']}, {result['torch_threads']} threads], image {w}x{h}")
    print(f"{'stage':34s} {'seconds':>9s}  note")
    for name, t, note in stages:
        print(f"{name:34s} {t:9.3f}  {note}")
    print(f"{'peak RSS':34s} {result['peak_rss_mb']:9.0f}  MB")
    if result["cuda_peak_mb"] is not None:
        print(f"{'CUDA peak':34s} {result['cuda_peak_mb']:9.0f}  MB")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing: dict[str, Any] = {}
    if args.out.is_file():
        try:
            existing = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            existing = {}
    existing[str(device.type)] = result
    args.out.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
