"""Mask propagation quality and speed on the shared DAVIS-2016 sequences.

Runs every available backend (static, flow and its ablations, sam2 when a checkpoint is found) with
the frame-0 ground-truth mask as the prompt, and prints per-sequence J, F, J&F (DAVIS definitions,
``garvideo.eval.vos``; first frame excluded), frames per second (decoding included) and the peak RSS
of the benchmark process so far (``bench/track_memory.py`` measures memory properly). Writes
``bench/results/track.json``.

Usage:
    .venv/bin/python bench/track.py [--data ../shared/data/davis2016] [--trackers static,flow,...]
        [--sequences blackswan,dog] [--threads 2] [--sam2-checkpoint PATH]

Tracker names (an ablation of the flow tracker, each step added to the one before):
``static``; ``flow-plain`` (backward warping of the soft mask only); ``flow-fb`` (+ forward/backward
consistency, search band, component filtering, hole filling); ``flow-app`` (+ colour appearance
models); ``flow-refine`` (+ guided-filter boundary refinement); ``flow-occl`` (+ occlusion handling
and re-detection); ``flow`` (+ colour weight adapted per frame: the default settings); ``sam2``
(needs a checkpoint).
``--sam2-speed 1024,512`` instead times the sam2 backend on CPU with a randomly initialised
SAM 2.1 hiera-t at each image size (the speed does not depend on the weights) over
``--speed-frames`` frames of the first sequence, and writes ``bench/results/track_sam2_speed.json``.

Timings are taken on whatever machine runs this; on a CPU shared with other jobs they are
pessimistic.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, SHARED, peak_rss_mb, write_json
from PIL import Image

from garvideo.eval.vos import evaluate_sequence
from garvideo.trackers import Prompt, build_tracker, find_sam2_checkpoint
from garvideo.video import open_video

SEQUENCES = ("blackswan", "car-shadow", "dog", "kite-surf", "libby", "soapbox")

VARIANTS: dict[str, tuple[str, dict]] = {
    "static": ("static", {}),
    "flow-plain": (
        "flow",
        {"consistency": False, "appearance": False, "refine": False, "redetect": False, "adaptive": False},
    ),
    "flow-fb": ("flow", {"appearance": False, "refine": False, "redetect": False, "adaptive": False}),
    "flow-app": ("flow", {"refine": False, "redetect": False, "adaptive": False}),
    "flow-refine": ("flow", {"redetect": False, "adaptive": False}),
    "flow-occl": ("flow", {"adaptive": False}),
    "flow": ("flow", {}),
    "sam2": ("sam2", {}),
}


def run_one(variant: str, seq_dir: Path, ann_dir: Path, threads: int, extra: dict) -> dict:
    name, opts = VARIANTS[variant]
    opts = {**opts, **({"threads": threads} if threads else {})}
    if name == "sam2":
        opts.update(extra)
    tracker = build_tracker(name, **opts)
    gt = [np.array(Image.open(p)) > 127 for p in sorted(ann_dir.glob("*.png"))]
    with open_video(seq_dir) as video:
        t0 = time.perf_counter()
        res = tracker.track(video, [Prompt(obj_id=1, frame=0, mask=gt[0])])
        dt = time.perf_counter() - t0
    pred = [res.mask(f, 1) for f in res.frames]
    s = evaluate_sequence(gt, pred)
    return {
        "J": s.j,
        "F": s.f,
        "JF": s.jf,
        "fps": len(pred) / dt,
        "frames": len(pred),
        "seconds": dt,
        "peak_rss_mb": peak_rss_mb(),
    }


def sam2_speed(seq_dir: Path, ann_dir: Path, sizes: list[int], n_frames: int, threads: int, out: Path) -> int:
    """Seconds per frame of the sam2 backend with a random-weight hiera-t, per image size."""
    import torch

    from garvideo.trackers.sam2_backend import Sam2Tracker, build_sam2_model

    gt0 = np.array(Image.open(min(ann_dir.glob("*.png")))) > 127
    rows = {}
    print(f"{'model':<16} {'size':>5} {'frames':>6} {'s/frame':>8} {'build s':>8} {'peak rss MB':>11}")
    for size in sizes:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        model = build_sam2_model("configs/sam2.1/sam2.1_hiera_t.yaml", image_size=size, device="cpu")
        build_s = time.perf_counter() - t0
        tracker = Sam2Tracker(model=model, device="cpu", threads=threads)
        with open_video(seq_dir) as video:
            # Warm-up frame (first-call allocations), then the timed run.
            tracker.track(video, [Prompt(1, 0, mask=gt0)], end=2)
            t0 = time.perf_counter()
            res = tracker.track(video, [Prompt(1, 0, mask=gt0)], end=n_frames)
            dt = time.perf_counter() - t0
        spf = dt / res.frames_visited
        rows[str(size)] = {
            "seconds_per_frame": spf,
            "frames": res.frames_visited,
            "build_seconds": build_s,
            "peak_rss_mb": peak_rss_mb(),
            "threads": threads,
        }
        print(
            f"{'sam2.1_hiera_t':<16} {size:>5} {res.frames_visited:>6} {spf:8.2f} {build_s:8.1f} "
            f"{peak_rss_mb():11.0f}",
            flush=True,
        )
    write_json(
        out,
        {
            "model": "sam2.1_hiera_t (random weights)",
            "device": "cpu",
            "threads": threads,
            "sequence": seq_dir.name,
            "results": rows,
            "load_average": os.getloadavg(),
            "note": "CPU shared with other jobs: timings are pessimistic",
        },
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "davis2016")
    ap.add_argument(
        "--trackers", default="static,flow-plain,flow-fb,flow-app,flow-refine,flow-occl,flow,sam2"
    )
    ap.add_argument("--sequences", default=",".join(SEQUENCES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sam2-checkpoint", default=None)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--sam2-speed", default=None, help="image sizes, e.g. 1024,512: time random hiera-t")
    ap.add_argument("--speed-frames", type=int, default=10)
    args = ap.parse_args(argv)
    if not (args.data / "JPEGImages").is_dir():
        print(f"no DAVIS data at {args.data}", file=sys.stderr)
        return 2
    try:
        import cv2
        import torch

        cv2.setNumThreads(args.threads)
        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    seqs = [s for s in args.sequences.split(",") if s]
    if args.sam2_speed:
        sizes = [int(x) for x in args.sam2_speed.split(",") if x]
        return sam2_speed(
            args.data / "JPEGImages" / "480p" / seqs[0],
            args.data / "Annotations" / "480p" / seqs[0],
            sizes,
            args.speed_frames,
            args.threads,
            args.out or RESULTS / "track_sam2_speed.json",
        )
    args.out = args.out or RESULTS / "track.json"
    variants = [v for v in args.trackers.split(",") if v]
    extra: dict = {}
    if "sam2" in variants:
        ckpt = find_sam2_checkpoint(args.sam2_checkpoint)
        if ckpt is None:
            print("sam2: skipped (no checkpoint: --sam2-checkpoint or GARVIDEO_SAM2_CHECKPOINT)")
            variants.remove("sam2")
        else:
            extra = {"sam2_checkpoint": ckpt}
            if args.image_size:
                extra["image_size"] = args.image_size
    results: dict[str, dict] = {}
    header = f"{'tracker':<11} {'sequence':<11} {'J':>6} {'F':>6} {'J&F':>6} {'fps':>6} {'rss MB':>7}"
    print(header)
    print("-" * len(header))
    for v in variants:
        results[v] = {}
        for seq in seqs:
            r = run_one(
                v,
                args.data / "JPEGImages" / "480p" / seq,
                args.data / "Annotations" / "480p" / seq,
                args.threads,
                extra,
            )
            results[v][seq] = r
            print(
                f"{v:<11} {seq:<11} {r['J']:6.3f} {r['F']:6.3f} {r['JF']:6.3f} {r['fps']:6.1f} "
                f"{r['peak_rss_mb']:7.0f}",
                flush=True,
            )
        mean = {k: float(np.mean([results[v][s][k] for s in seqs])) for k in ("J", "F", "JF", "fps")}
        results[v]["mean"] = mean
        print(
            f"{v:<11} {'MEAN':<11} {mean['J']:6.3f} {mean['F']:6.3f} {mean['JF']:6.3f} {mean['fps']:6.1f}",
            flush=True,
        )
    payload = {
        "data": str(args.data),
        "threads": args.threads,
        "sequences": seqs,
        "results": results,
        "load_average": os.getloadavg(),
        "note": "fps on a CPU shared with other jobs are pessimistic",
    }
    write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
