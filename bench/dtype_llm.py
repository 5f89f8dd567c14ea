"""float32 vs bfloat16 for GAR-1B's language model on this machine: prefill and decode, interleaved.

The question behind ``--dtype auto`` on CPU: with the vision tower left out (``bench/model.py`` times every
stage, but a whole round takes minutes, so machine load drifts between its float32 and bf16 passes), one
GAR-1B-shaped model (random weights) is converted between the two dtypes and timed on the same prompt,
alternating, ``--rounds`` times; the table gives the best round of each and the ratios.

    python bench/dtype_llm.py --rounds 2 --prompt 512 --new-tokens 16
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, gar_1b_config, random_model, write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--prompt", type=int, default=512, help="prompt tokens (random embeddings)")
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--out", default="bench/results/dtype_llm.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import DynamicCache

    model = random_model(gar_1b_config(), torch.float32, torch.device("cpu"))
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for dt in (torch.float32, torch.bfloat16):
            model.to(dt)
            emb = torch.randn(1, args.prompt, model.hidden_size, dtype=dt)  # (1, P, D)
            with torch.inference_mode():
                cache = DynamicCache(config=model.mllm.config.text_config)
                t0 = time.perf_counter()
                out = model.forward(emb, None, cache, True, 1)
                prefill = time.perf_counter() - t0
                next_id = out.logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
                t0 = time.perf_counter()
                for _ in range(args.new_tokens):
                    step = model.forward(model.get_input_embeddings()(next_id), None, cache, True, 1)
                    next_id = step.logits[:, -1].argmax(-1, keepdim=True)
                decode = time.perf_counter() - t0
            name = str(dt).replace("torch.", "")
            cur = best.setdefault(name, {"prefill": prefill, "decode": decode})
            cur["prefill"], cur["decode"] = min(cur["prefill"], prefill), min(cur["decode"], decode)
    f32, b16 = best["float32"], best["bfloat16"]
    load = os.getloadavg()
    print(f"GAR-1B language model (random weights), CPU, {torch.get_num_threads()} threads, "
          f"{args.prompt}-token prompt, {args.new_tokens} new tokens, best of {args.rounds}; "
          f"load average {load[0]:.1f}")  # fmt: skip
    print(f"{'stage':10s} {'float32 s':>10s} {'bfloat16 s':>11s} {'bf16 faster':>12s}")
    for stage in ("prefill", "decode"):
        print(f"{stage:10s} {f32[stage]:10.2f} {b16[stage]:11.2f} {f32[stage] / b16[stage]:11.2f}x")
    write_json(
        Path(args.out),
        {
            "command": command_line(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "load_average": list(load),
            "prompt_tokens": args.prompt,
            "new_tokens": args.new_tokens,
            "best_seconds": best,
            "bf16_speedup": {s: f32[s] / b16[s] for s in ("prefill", "decode")},
        },
    )


if __name__ == "__main__":
    main()
