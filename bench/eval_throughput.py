"""Eval throughput: questions per second and the share of wall time the model is busy, serial versus
prefetching versus batched answering.

Runs the VideoRefer-Bench-Q loop (:func:`garvideo.eval.videorefer_q.run_videorefer_q`) on the shared mini
file (12 questions on 6 DAVIS-2016 clips, 854×480, ``single`` mode, the flow tracker by default) with:

* the tiny random GAR (float32), every variant;
* optionally (``--gar1b N``) GAR-1B's architecture with random weights (``bench/_common.py``) on the first
  ``N`` questions (a random model stops at random places: its answers have 1 to ``--max-new-tokens``
  tokens, the same in every variant since the predictions are identical).

Variants (``--variants``): ``serial`` (``--prefetch 0 --batch-size 1``: everything in one thread, one
question at a time), ``prefetch`` (``--prefetch 2``: a background thread opens, tracks and decodes the
next clips while the model runs), ``batched`` (``--batch-size 4``), ``both``. For each: wall time,
questions/s, **model busy** = time the calling thread spent in the model (keyframe encoding, prefill,
generation) / wall time, time waiting for a clip, and whether the predictions equal the serial run's
(timings aside). The machine's load average is recorded before and after: it is shared, so compare the
variants as ratios.

Usage:
    .venv/bin/python bench/eval_throughput.py [--tracker flow] [--num-frames 4] [--max-new-tokens 8]
        [--variants serial,prefetch,batched,both] [--gar1b 4 --gar1b-variants serial,both] [--threads N]
        [--out bench/results/eval_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    SHARED,
    add_torch_args,
    command_line,
    device_name,
    gar_1b_config,
    gar_bundle,
    torch_device,
    write_json,
)

MINI = SHARED / "data" / "videorefer-mini" / "VideoRefer-Bench-Q-mini.json"
VIDEO_ROOT = SHARED / "data" / "davis2016"
VARIANTS = {"serial": (0, 1), "prefetch": (2, 1), "batched": (0, 4), "both": (2, 4)}


def stripped(path: Path) -> list[str]:
    """The predictions without their timings (what must not depend on the variant)."""
    out = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        r.pop("timings", None)
        out.append(json.dumps(r))
    return out


def run_variants(gv: Any, names: list[str], limit: int | None, tmp: Path, label: str) -> list[dict[str, Any]]:
    from garvideo.eval.videorefer_q import run_videorefer_q
    from garvideo.runs.engine import RunnerStats

    rows: list[dict[str, Any]] = []
    reference: list[str] | None = None
    for name in names:
        prefetch, batch_size = VARIANTS[name]
        out = tmp / f"{label}-{name}.jsonl"
        stats = RunnerStats()
        load0 = os.getloadavg()[0]
        res = run_videorefer_q(
            MINI, VIDEO_ROOT, out, gv, limit=limit, prefetch=prefetch, batch_size=batch_size, stats=stats
        )
        wall = res.summary.seconds
        preds = stripped(out)
        if reference is None:
            reference = preds
        rows.append(
            {
                "model": label,
                "variant": name,
                "prefetch": prefetch,
                "batch_size": batch_size,
                "questions": res.summary.written,
                "clips": stats.clips,
                "wall_s": wall,
                "questions_per_s": res.summary.written / wall,
                "model_s": stats.model_s,
                "model_busy": stats.model_s / wall,
                "wait_s": stats.wait_s,
                "prepare_s": stats.prepare_s,
                "errors": res.summary.failed,
                "same_predictions_as_first": preds == reference,
                "load_avg_1min": [load0, os.getloadavg()[0]],
            }
        )
        r = rows[-1]
        print(
            f"  {label:6s} {name:9s} {r['wall_s']:7.1f} s  {r['questions_per_s']:6.3f} q/s  "
            f"model busy {100 * r['model_busy']:5.1f}%  wait {r['wait_s']:6.1f} s  "
            f"same={r['same_predictions_as_first']}",
            flush=True,
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracker", default="flow")
    parser.add_argument("--num-frames", type=int, default=4, help="keyframes K")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS)
    )
    parser.add_argument(
        "--gar1b", type=int, default=0, help="also run GAR-1B's shape on the first N questions"
    )
    parser.add_argument("--gar1b-dtype", default="bfloat16", help="dtype of the GAR-1B-shaped run")
    parser.add_argument("--gar1b-variants", default="serial,both", help="variants of the GAR-1B-shaped run")
    add_torch_args(parser, device="cpu", out="eval_throughput.json")
    args = parser.parse_args()
    if not MINI.is_file():
        print(f"the shared VideoRefer mini file is not at {MINI}", file=sys.stderr)
        return 2
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        print(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})", file=sys.stderr)
        return 2

    import torch

    from garvideo.model import make_tiny_model
    from garvideo.pipeline import GarVideo

    device = torch_device(args)
    common = {"tracker": args.tracker, "num_frames": args.num_frames, "max_new_tokens": args.max_new_tokens}
    rows: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tiny = make_tiny_model(tmp / "tiny", seed=0)
        gv = GarVideo(str(tiny), device=str(device), dtype="float32", **common)
        n = len(json.loads(MINI.read_text()))
        print(f"tiny GAR (float32), {args.tracker} tracker, K={args.num_frames}, {n} questions")
        rows += run_variants(gv, names, None, tmp, "tiny")
        if args.gar1b:
            dtype = getattr(torch, args.gar1b_dtype)
            bundle = gar_bundle(gar_1b_config(), device, dtype, "GAR-1B shape, random weights")
            gv = GarVideo(model=bundle, device=str(device), dtype=dtype, **common)
            print(f"GAR-1B shape, random weights ({args.gar1b_dtype}), first {args.gar1b} questions")
            gar_names = [v.strip() for v in args.gar1b_variants.split(",") if v.strip() in VARIANTS]
            rows += run_variants(gv, gar_names, args.gar1b, tmp, "gar1b")
    load_end = os.getloadavg()

    print()
    print(f"{'model':6s} {'variant':9s} {'P':>2s} {'B':>2s} {'q':>3s} {'wall s':>8s} {'q/s':>7s} {'speed-up':>8s} "
          f"{'model busy':>10s} {'wait s':>7s} {'same':>5s}")  # fmt: skip
    base: dict[str, float] = {}
    for r in rows:
        base.setdefault(r["model"], r["questions_per_s"])
        r["speedup_vs_first"] = r["questions_per_s"] / base[r["model"]]
        print(
            f"{r['model']:6s} {r['variant']:9s} {r['prefetch']:2d} {r['batch_size']:2d} {r['questions']:3d} "
            f"{r['wall_s']:8.1f} {r['questions_per_s']:7.3f} {r['speedup_vs_first']:7.2f}x "
            f"{100 * r['model_busy']:9.1f}% {r['wait_s']:7.1f} {r['same_predictions_as_first']!s:>5s}"
        )
    print(
        f"machine: {os.cpu_count()} CPUs, load average (1, 5, 15 min) {tuple(round(x, 1) for x in load_start)} "
        f"at the start, {tuple(round(x, 1) for x in load_end)} at the end (shared: compare as ratios)"
    )
    write_json(
        args.out,
        {
            "data": str(MINI),
            "tracker": args.tracker,
            "num_frames": args.num_frames,
            "max_new_tokens": args.max_new_tokens,
            "device": str(device),
            "device_name": device_name(device),
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "load_avg_start": load_start,
            "load_avg_end": load_end,
            "rows": rows,
            "command": command_line(),
        },
        key=device.type,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
