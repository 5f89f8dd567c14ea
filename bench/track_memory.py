"""Peak memory of mask propagation: a 2,000-frame clip against a 100-frame one.

Claim checked: peak RSS of a 2,000-frame propagation stays within 300 MB of a 100-frame one (frames
stream from the reader, the result is run-length encoded, the sam2 memory bank is pruned).

The clip is built once from a DAVIS sequence played forwards and backwards in a loop (continuous
motion, 854x480, mp4) and read through ``garvideo.video.open_video`` like any user clip; the prompt
is the sequence's frame-0 mask. Each (tracker, length) runs in a fresh process so that its peak RSS
(``ru_maxrss``) is its own.

Trackers: ``flow``, ``static``, ``sam2-tiny`` (the sam2 backend with a tiny random SAM 2.1 of the
same architecture, ``TINY_OVERRIDES``: same streaming loop and memory bank, CPU-friendly) and
``sam2-t`` / ``sam2-l`` (random-weight hiera-t / hiera-l at ``--image-size``, e.g. 1024; slow on CPU,
so not in the default list: run them with short ``--lengths`` such as ``4,20``; the memory bank is
full after ``max_obj_ptrs_in_encoder`` = 16 frames, so 20 frames already show its bound).

Usage:
    .venv/bin/python bench/track_memory.py [--trackers flow,static,sam2-tiny] [--lengths 100,2000]
        [--threads 2] [--image-size 512] [--backend auto|decord|opencv]

The video reader's own memory is part of the figure: ``--backend`` picks the full-size reader
(decord's reads ahead of a slow consumer up to a plateau, reached after a few hundred frames at
854x480, so compare 300 vs 2,000 frames to see the clip-length term alone; OpenCV's stays flat).
The sam2 tracker also reads the model's S x S frames with a second, one-thread decord reader.

Writes ``bench/results/track_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, SHARED, peak_rss_mb, write_json

DATA = SHARED / "data" / "davis2016"


def make_clip(seq: str, n: int, out: Path) -> tuple[Path, Path]:
    """Write an ``n``-frame mp4 looping ``seq`` forwards and backwards, and its frame-0 mask."""
    import cv2
    from PIL import Image

    video = out / f"{seq}_{n}.mp4"
    mask = out / f"{seq}_mask.png"
    if video.exists() and mask.exists():
        return video, mask
    out.mkdir(parents=True, exist_ok=True)
    frames = sorted((DATA / "JPEGImages" / "480p" / seq).glob("*.jpg"))
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    first = cv2.imread(str(frames[0]))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    cache: dict[int, np.ndarray] = {}
    for i in range(n):
        k = order[i % len(order)]
        if k not in cache:
            cache[k] = cv2.imread(str(frames[k]))
        writer.write(cache[k])
    writer.release()
    ann = min((DATA / "Annotations" / "480p" / seq).glob("*.png"))
    Image.fromarray((np.array(Image.open(ann)) > 127).astype(np.uint8) * 255).save(mask)
    return video, mask


def child(tracker: str, video: Path, mask: Path, threads: int, image_size: int, backend: str) -> dict:
    """Run one propagation in this process; return timings and peak RSS."""
    import torch

    from garvideo.masks import load_mask
    from garvideo.trackers import Prompt, build_tracker
    from garvideo.video import open_video

    torch.set_num_threads(threads)
    rss0 = peak_rss_mb()
    if tracker in ("sam2-tiny", "sam2-t", "sam2-l"):
        from garvideo.trackers.sam2_backend import TINY_OVERRIDES, Sam2Tracker, build_sam2_model

        torch.manual_seed(0)
        extra = TINY_OVERRIDES if tracker == "sam2-tiny" else ()
        size = 128 if tracker == "sam2-tiny" else image_size
        cfg = "configs/sam2.1/sam2.1_hiera_l.yaml" if tracker == "sam2-l" else "configs/sam2.1/sam2.1_hiera_t.yaml"
        model = build_sam2_model(cfg, image_size=size, extra_overrides=extra)
        trk = Sam2Tracker(model=model, device="cpu", threads=threads)
    else:
        trk = build_tracker(tracker, threads=threads)
    with open_video(video, backend=backend) as v:
        (m,) = load_mask(mask, (v.height, v.width))
        rss_ready = peak_rss_mb()
        t0 = time.perf_counter()
        res = trk.track(v, [Prompt(1, 0, mask=m)])
        dt = time.perf_counter() - t0
    visible = len(res.visible_frames(1))
    return {
        "frames": len(res.frames),
        "visible": visible,
        "seconds": dt,
        "fps": len(res.frames) / dt,
        "rss_start_mb": rss0,
        "rss_ready_mb": rss_ready,
        "peak_rss_mb": peak_rss_mb(),
        "info": {k: v for k, v in res.info.items() if isinstance(v, (int, float, str))},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trackers", default="flow,static,sam2-tiny")
    ap.add_argument("--lengths", default="100,2000")
    ap.add_argument("--sequence", default="blackswan")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--backend", default="auto", help="video reader: auto (decord), decord or opencv")
    ap.add_argument("--clips", type=Path, default=Path("/tmp/garvideo_bench_clips"))
    ap.add_argument("--out", type=Path, default=RESULTS / "track_memory.json")
    ap.add_argument("--child", nargs=2, metavar=("TRACKER", "LENGTH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        video, mask = make_clip(args.sequence, int(args.child[1]), args.clips)
        print(json.dumps(child(args.child[0], video, mask, args.threads, args.image_size, args.backend)))
        return 0
    if not (DATA / "JPEGImages").is_dir():
        print(f"no DAVIS data at {DATA}", file=sys.stderr)
        return 2
    lengths = [int(x) for x in args.lengths.split(",")]
    for n in lengths:
        make_clip(args.sequence, n, args.clips)
    results: dict[str, dict] = {}
    print(f"{'tracker':<10} {'frames':>6} {'fps':>6} {'ready MB':>9} {'peak MB':>8}  delta vs shortest")
    for trk in [t for t in args.trackers.split(",") if t]:
        results[trk] = {}
        for n in lengths:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                trk,
                str(n),
                "--sequence",
                args.sequence,
                "--threads",
                str(args.threads),
                "--image-size",
                str(args.image_size),
                "--clips",
                str(args.clips),
                "--backend",
                args.backend,
            ]
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
            )
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results[trk][str(n)] = r
            base = results[trk][str(lengths[0])]["peak_rss_mb"]
            print(
                f"{trk:<10} {n:>6} {r['fps']:6.1f} {r['rss_ready_mb']:9.0f} {r['peak_rss_mb']:8.0f}  "
                f"{r['peak_rss_mb'] - base:+.0f} MB",
                flush=True,
            )
        first, last = results[trk][str(lengths[0])], results[trk][str(lengths[-1])]
        results[trk]["delta_peak_mb"] = last["peak_rss_mb"] - first["peak_rss_mb"]
        results[trk]["within_300mb"] = results[trk]["delta_peak_mb"] <= 300
    write_json(
        args.out,
        {
            "sequence": args.sequence,
            "lengths": lengths,
            "threads": args.threads,
            "backend": args.backend,
            "load_average": os.getloadavg(),
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
