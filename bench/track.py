"""Mask propagation quality and speed on the shared DAVIS-2016 sequences.

Runs backends (static, flow and its ablations, sam2 when a checkpoint is found) with the frame-0
ground-truth mask as the prompt, and prints per-sequence J, F, J&F (DAVIS definitions,
``garvideo.eval.vos``; first frame excluded) and the mean over the sequences. Quality runs go
through a pool of ``--jobs`` processes (one OpenCV thread each). Writes ``bench/results/track.json``.

Usage:
    .venv/bin/python bench/track.py [--data ../shared/data/davis2016] [--trackers flow-v1,flow]
        [--sequences blackswan,dog] [--jobs 2] [--loo "motion=0.5,1,1.5;motion_positive=0.25,0.5,0.75"]
        [--speed blackswan,camel] [--threads 2] [--sam2-checkpoint PATH]

Tracker names (an ablation of the flow tracker, each step added to the one before):
``static``; ``flow-plain`` (backward warping of the soft mask only); ``flow-v1`` (the previous
default: forward/backward check, ring-background colour histograms with a per-frame adaptive
weight, guided-filter refinement, occlusion handling); ``flow-fine`` (+ flow on the crop around the
objects at the finest affordable scale); ``flow-globalbg`` (+ whole-frame background colours);
``flow-bilateral`` (+ the bilateral colour-and-position term); ``flow-noadaptive`` (the adaptive
colour weight dropped); ``flow-holes`` (holes in the mask no longer filled); ``flow-768`` (working
resolution 768 instead of 640 pixels on the long side: the previous default); ``flow-negmotion`` (+ the
motion term, negative side only: moving like the background counts against a pixel); ``flow`` (+ its
positive side, capped at ``motion_positive``: the current defaults); ``flow-ungated`` (the defaults
with motion evidence also where the flow fails its forward/backward check: an ablation, not a step);
``sam2`` (needs a checkpoint).

``--loo NAME=V1,V2,...[;NAME2=...]`` runs the ``flow`` tracker at every combination of the values
(a grid over one or more options) and reports the leave-one-out figure: for every sequence, the
combination best on the other sequences, scored on it.
``--speed SEQ,...`` times ``flow-v1``, ``flow-768`` and ``flow`` one after the other on each
sequence in this process (``--threads`` OpenCV threads, decoding included) and reports their
frames/s and the ratio flow / flow-v1, with the load average (the CPU is shared: compare the ratio, not the absolute figures).
``--sam2-speed 1024,512`` instead times the sam2 backend on CPU with a randomly initialised
SAM 2.1 hiera-t at each image size (the speed does not depend on the weights) over
``--speed-frames`` frames of the first sequence, and writes ``bench/results/track_sam2_speed.json``.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, SHARED, peak_rss_mb, write_json
from PIL import Image

from garvideo.errors import InputError
from garvideo.eval.vos import evaluate_sequence
from garvideo.trackers import Prompt, build_tracker, find_sam2_checkpoint
from garvideo.trackers.flow import FlowOptions, parse_flow_options
from garvideo.video import open_video

_OFF = {
    "work_size": 640,
    "fine_flow": False,
    "global_bg": False,
    "bilateral": 0.0,
    "fill_holes": True,
    "motion": 0.0,
}
_W640 = {"work_size": 640, "motion": 0.0}  # the earlier working resolution, no motion term
VARIANTS: dict[str, tuple[str, dict]] = {
    "static": ("static", {}),
    "flow-plain": (
        "flow",
        {"consistency": False, "appearance": False, "refine": False, "redetect": False, **_OFF},
    ),
    "flow-v1": ("flow", {"adaptive": True, **_OFF}),
    "flow-fine": (
        "flow",
        {"adaptive": True, "global_bg": False, "bilateral": 0.0, "fill_holes": True, **_W640},
    ),
    "flow-globalbg": ("flow", {"adaptive": True, "bilateral": 0.0, "fill_holes": True, **_W640}),
    "flow-bilateral": ("flow", {"adaptive": True, "fill_holes": True, **_W640}),
    "flow-noadaptive": ("flow", {"fill_holes": True, **_W640}),
    "flow-holes": ("flow", {**_W640}),
    "flow-768": ("flow", {"motion": 0.0}),
    "flow-negmotion": ("flow", {"motion_positive": 0.0}),
    "flow-ungated": ("flow", {"motion_reliable": False}),
    "flow": ("flow", {}),
    "sam2": ("sam2", {}),
}


def run_one(job: tuple[str, dict, Path, Path, int, dict]) -> dict:
    """Track one sequence with one tracker setting; J, F, J&F and timing."""
    variant, override, seq_dir, ann_dir, threads, extra = job
    name, opts = VARIANTS[variant]
    opts = {**opts, **override, **({"threads": threads} if threads else {})}
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


def run_many(jobs: list[tuple], n_jobs: int) -> list[dict]:
    """run_one over the jobs, in a pool of n_jobs processes (in order)."""
    if n_jobs <= 1:
        return [run_one(j) for j in jobs]
    with multiprocessing.get_context("spawn").Pool(n_jobs, initializer=_worker_init) as pool:
        return pool.map(run_one, jobs, chunksize=1)


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def leave_one_out(scores: dict[str, dict[str, float]]) -> dict:
    """scores[value][sequence] = J&F. For each sequence, the value with the best mean over the
    other sequences, and the J&F it gets on the held-out one."""
    values = list(scores)
    seqs = list(next(iter(scores.values())))
    chosen, held = {}, {}
    for s in seqs:
        rest = [t for t in seqs if t != s]
        best = max(values, key=lambda v: float(np.mean([scores[v][t] for t in rest])))
        chosen[s], held[s] = best, scores[best][s]
    return {
        "per_value_mean": {v: float(np.mean([scores[v][t] for t in seqs])) for v in values},
        "chosen": chosen,
        "held_out_JF": held,
        "loo_mean_JF": float(np.mean(list(held.values()))),
    }


def _parse_grid(spec: str) -> list[dict]:
    """``"a=1,2;b=0.5"`` -> every combination, ``[{"a": 1, "b": 0.5}, {"a": 2, "b": 0.5}]`` (values
    typed and checked as ``--flow-option`` reads them). ``""`` -> []."""
    axes: list[tuple[str, list]] = []
    for part in (p for p in spec.split(";") if p.strip()):
        name, _, vals = part.partition("=")
        name = name.strip()
        try:
            values = [parse_flow_options([f"{name}={x}"])[name] for x in vals.split(",") if x]
        except InputError as exc:
            raise SystemExit(f"--loo: {exc}") from None
        axes.append((name, values))
    if not axes:
        return []
    return [dict(zip([n for n, _ in axes], combo)) for combo in itertools.product(*(v for _, v in axes))]


def _grid_label(combo: dict) -> str:
    return "flow[" + ",".join(f"{k}={v:g}" for k, v in combo.items()) + "]"


def speed(seqs: list[str], data: Path, threads: int) -> dict:
    """frames/s of flow-v1, flow-768 (the previous default: no motion term) and flow, one after the
    other on each sequence, in this process; ratio is flow / flow-768."""
    rows: dict[str, dict] = {}
    print(f"{'speed':<14} {'flow-v1 fps':>11} {'flow-768 fps':>12} {'flow fps':>9} {'ratio':>6}  load")
    for seq in seqs:
        r = {}
        for v in ("flow-v1", "flow-768", "flow"):
            job = (
                v,
                {},
                data / "JPEGImages" / "480p" / seq,
                data / "Annotations" / "480p" / seq,
                threads,
                {},
            )
            r[v] = run_one(job)["fps"]
        r["ratio"] = r["flow"] / r["flow-768"]
        r["load_average"] = os.getloadavg()
        rows[seq] = r
        print(
            f"{seq:<14} {r['flow-v1']:11.1f} {r['flow-768']:12.1f} {r['flow']:9.1f} {r['ratio']:6.2f}  "
            f"{r['load_average'][0]:.1f}"
        )
    return rows


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
        "--trackers",
        default="static,flow-plain,flow-v1,flow-fine,flow-globalbg,flow-bilateral,flow-noadaptive,flow-holes,"
        "flow-768,flow-negmotion,flow-ungated,flow,sam2",
    )
    ap.add_argument("--sequences", default="", help="comma-separated; default: every sequence in --data")
    ap.add_argument("--jobs", type=int, default=2, help="processes for the quality runs")
    ap.add_argument(
        "--loo",
        default="motion=0.5,1,1.5;motion_positive=0.25,0.5,0.75",
        help="NAME=V1,V2,...[;NAME2=...]: a grid of flow options ('' to skip)",
    )
    ap.add_argument("--speed", default="", help="sequences to time flow-v1, flow-768 and flow on")
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
    seqs = [s for s in args.sequences.split(",") if s] or sorted(
        p.name for p in (args.data / "JPEGImages" / "480p").iterdir() if p.is_dir()
    )
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
    grid = _parse_grid(args.loo)
    # Every (setting, sequence) run as one job list, so the pool stays busy.
    settings: list[tuple[str, str, dict]] = [(v, v, {}) for v in variants]
    defaults = FlowOptions()
    for combo in grid:
        if "flow" in variants and all(getattr(defaults, k) == v for k, v in combo.items()):
            continue  # the default setting: the "flow" run itself
        settings.append((_grid_label(combo), "flow", combo))
    jobs = [
        (base, over, args.data / "JPEGImages" / "480p" / s, args.data / "Annotations" / "480p" / s, 1, extra)
        for _, base, over in settings
        for s in seqs
    ]
    t0 = time.perf_counter()
    out = run_many(jobs, args.jobs)
    results: dict[str, dict] = {}
    header = f"{'tracker':<24} {'sequence':<14} {'J':>6} {'F':>6} {'J&F':>6}"
    print(header)
    print("-" * len(header))
    for i, (label, _, _) in enumerate(settings):
        results[label] = dict(zip(seqs, out[i * len(seqs) : (i + 1) * len(seqs)], strict=True))
        for s in seqs:
            r = results[label][s]
            print(f"{label:<24} {s:<14} {r['J']:6.3f} {r['F']:6.3f} {r['JF']:6.3f}")
        mean = {k: float(np.mean([results[label][s][k] for s in seqs])) for k in ("J", "F", "JF")}
        results[label]["mean"] = mean
        print(f"{label:<24} {'MEAN':<14} {mean['J']:6.3f} {mean['F']:6.3f} {mean['JF']:6.3f}", flush=True)
    loo = None
    if grid:
        scores = {}
        for combo in grid:
            label = _grid_label(combo)
            if label not in results:
                label = "flow"
            scores[_grid_label(combo)] = {s: results[label][s]["JF"] for s in seqs}
        default_label = _grid_label({k: getattr(defaults, k) for k in grid[0]})
        loo = {"grid": args.loo, "default": default_label, **leave_one_out(scores)}
        print(
            f"leave-one-out over {args.loo}: J&F {loo['loo_mean_JF']:.3f} "
            f"(the default {default_label}: {loo['per_value_mean'][default_label]:.3f}; "
            f"chosen: {', '.join(f'{s}={v}' for s, v in loo['chosen'].items())})"
        )
    speed_rows = (
        speed([s for s in args.speed.split(",") if s], args.data, args.threads) if args.speed else None
    )
    payload = {
        "data": str(args.data),
        "jobs": args.jobs,
        "sequences": seqs,
        "results": results,
        "leave_one_out": loo,
        "speed": speed_rows,
        "speed_threads": args.threads,
        "quality_wall_seconds": time.perf_counter() - t0,
        "load_average": os.getloadavg(),
        "note": "quality runs: one OpenCV thread per process, their fps are not speed figures; "
        "speed: --threads threads in one process on a CPU shared with other jobs (compare ratios)",
    }
    write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
