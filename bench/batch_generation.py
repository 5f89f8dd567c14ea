"""Batched generation (``GarVideo.run_batch``) against one question at a time: do the answers agree, and
what does batching save?

The tiny random GAR (``make_tiny_model``, seed 0) answers describe, free-form and multiple-choice questions
on the DAVIS-2016 clips in ``../shared`` (frame-0 mask, static tracker; the synthetic sample clip when the
shared data is absent), in float32 and in bfloat16, one by one (``describe``/``ask``) and with
``run_batch(batch_size=B)`` (each run prefills every clip's prompt prefix once). It reports, per dtype, how many answers (text, option letter, token count)
differ between the two. float32 must agree everywhere (the tests check it); in bf16 a batched row's
logits differ from the one-row logits by rounding, so a near-tie between the two best tokens can flip
and the text diverge from there.

The plain tiny model tends to repeat one token, so a second variant scales its LLM's matrices ×16 (the
``garvideo.model.tiny.lively_bundle``): its greedy text changes from token to token, the
harsher test of near-ties. The timings are the tiny model's (overhead-bound), not GAR-1B's.

Usage:
    .venv/bin/python bench/batch_generation.py [--batch-size 8] [--num-frames 4] [--new-tokens 12]
        [--clips 10] [--threads N] [--out bench/results/batch_generation.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import SHARED, add_torch_args, command_line, torch_device, write_json

from garvideo.model.tiny import lively_bundle

FREE = ["What is <object0> doing?", "What colour is <object0>?", "Where is <object0> going?"]
CHOICE = [
    ("Is <object0> moving?", ["yes", "no"]),
    ("What is <object0>?", ["an animal", "a vehicle", "a person", "a plant"]),
    ("Where is <object0>?", ["on the left", "in the middle", "on the right"]),
]


def clips(tmp: Path, n: int) -> list[tuple[Path, Any]]:
    """(frames, frame-0 mask) of up to ``n`` DAVIS-2016 sequences, else the synthetic sample clip."""
    from garvideo.masks import load_mask

    davis = SHARED / "data" / "davis2016"
    seqs = sorted((davis / "JPEGImages" / "480p").glob("*")) if davis.is_dir() else []
    out = [(s, load_mask(davis / "Annotations" / "480p" / s.name / "00000.png")) for s in seqs[:n]]
    if out:
        return out
    from garvideo.demos.sample_clip import make_sample_clip

    clip = make_sample_clip(tmp)
    return [(clip.video_path, load_mask(clip.object_masks[0]))]


def compare(bundle: Any, sources: list[tuple[Path, Any]], args: argparse.Namespace) -> dict[str, Any]:
    from garvideo.pipeline import GarVideo, Question

    gv = GarVideo(model=bundle, tracker="static", num_frames=args.num_frames, max_new_tokens=args.new_tokens)
    prepared = [gv.prepare(frames, masks=mask, frame=0) for frames, mask in sources]
    questions = []
    for clip in prepared:
        questions.append(Question(clip))
        questions += [Question(clip, q) for q in FREE]
        questions += [Question(clip, q, opts) for q, opts in CHOICE]
    # Interleave the clips, as a benchmark's question file would.
    questions = [questions[i] for k in range(7) for i in range(k, len(questions), 7)]

    def fresh() -> None:  # both runs prefill each clip's prefix once
        for clip in prepared:
            clip.prefix_caches.clear()

    fresh()
    t0 = time.perf_counter()
    serial = []
    for q in questions:
        if q.question is None:
            serial.append(gv.describe(q.clip))
        else:
            serial.append(gv.ask(q.clip, q.question, q.options))
    t_serial = time.perf_counter() - t0
    fresh()
    t0 = time.perf_counter()
    batched = gv.run_batch(questions, batch_size=args.batch_size)
    t_batched = time.perf_counter() - t0

    def key(r: Any) -> tuple:
        return (r.text, getattr(r, "letter", None), r.new_tokens)

    text_diff = sum(a.text != b.text for a, b in zip(serial, batched))
    letters = [(a, b) for a, b, q in zip(serial, batched, questions) if q.options is not None]
    for clip in prepared:
        clip.close()
    return {
        "questions": len(questions),
        "multiple_choice": len(letters),
        "differ": sum(key(a) != key(b) for a, b in zip(serial, batched)),
        "text_differs": text_diff,
        "letter_differs": sum(a.letter != b.letter for a, b in letters),
        "distinct_texts": len({r.text for r in serial}),
        "serial_seconds": t_serial,
        "batched_seconds": t_batched,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_torch_args(parser, device="cpu", out="batch_generation.json")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-frames", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=12)
    parser.add_argument("--clips", type=int, default=10)
    args = parser.parse_args()
    device = torch_device(args)

    from garvideo.model import load_gar, make_tiny_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_tiny_model(Path(tmp) / "tiny", seed=0)
        sources = clips(Path(tmp), args.clips)
        for dtype in ("float32", "bfloat16"):
            base = load_gar(folder, dtype=dtype, device=device)
            for variant, bundle in (("tiny", base), ("tiny, LLM x16", lively_bundle(base))):
                r = compare(bundle, sources, args)
                rows.append({"dtype": dtype, "model": variant, **r})
                print(f"  {dtype:9s} {variant:14s} done", flush=True)

    print(
        f"run_batch(batch_size={args.batch_size}) vs one by one: {rows[0]['questions']} questions "
        f"({rows[0]['multiple_choice']} multiple choice) on {len(sources)} clip(s), K={args.num_frames}, "
        f"{args.new_tokens} new tokens, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'dtype':9s} {'model':14s} {'differ':>7s} {'text':>5s} {'letter':>7s} {'distinct':>9s} {'serial s':>9s} {'batched s':>10s}"
    )
    for r in rows:
        print(
            f"{r['dtype']:9s} {r['model']:14s} {r['differ']:7d} {r['text_differs']:5d} {r['letter_differs']:7d} "
            f"{r['distinct_texts']:9d} {r['serial_seconds']:9.2f} {r['batched_seconds']:10.2f}"
        )
    write_json(
        args.out,
        {
            "batch_size": args.batch_size,
            "num_frames": args.num_frames,
            "new_tokens": args.new_tokens,
            "clips": [str(Path(f).name) for f, _ in sources],
            "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()),
            "rows": rows,
            "command": command_line(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
