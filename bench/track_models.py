"""Per-frame speed and peak memory of the sam3 / edgetam / sam2 trackers on this CPU, random weights.

Two parts, each measurement in its own subprocess (peak RSS, ``ru_maxrss``, is per process):

* ``speed``: the released shapes (``Sam3TrackerVideoConfig()`` defaults = SAM 3's tracker, 1008 px;
  EdgeTAM with its RepViT-M1 backbone at 1024 px; SAM 2.1 hiera-t at 1024 and 512 px), a few frames of a
  synthetic 640x480 clip, one box prompt: seconds per frame after the first frame, peak RSS.
* ``memory``: the tiny SAM 3 (``make-tiny-model --kind sam3``) over a short and a 4x longer clip: peak RSS
  and the tracker's largest memory bank (``memory_entries_max``), pruned and unpruned. The released shapes
  cost seconds per frame here, so the growth with clip length is measured on the tiny model (the pruning
  logic is the same; at real size transformers keeps about 18.6 MB a frame per object unpruned).

Usage::

    .venv/bin/python bench/track_models.py            # table + bench/results/track_models.json
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "track_models.json"


class _Clip:
    def __init__(self, n: int, h: int = 480, w: int = 640) -> None:
        rng = np.random.default_rng(0)
        self.bg = (rng.random((h, w, 3)) * 80).astype(np.uint8)
        self.num_frames, self.height, self.width = n, h, w

    def frames(self, indices):
        for i in indices:
            im = self.bg.copy()
            x = 40 + (3 * i) % (self.width - 200)
            im[100:260, x : x + 160] = (230, 200, 40)
            yield i, im


def _real_tracker(kind: str, size: int):
    import transformers as tf

    from garvideo.trackers.hf_video import HfVideoTracker

    if kind == "sam2":
        from garvideo.trackers.sam2_backend import Sam2Tracker, build_sam2_model

        return Sam2Tracker(
            model=build_sam2_model("configs/sam2.1/sam2.1_hiera_t.yaml", size, "cpu"), device="cpu"
        )
    if kind == "sam3":
        model = tf.Sam3TrackerVideoModel(tf.Sam3TrackerVideoConfig())
        s = 1008
        ip = tf.Sam3ImageProcessor(size={"height": s, "width": s})
        vp = tf.Sam2VideoVideoProcessor(
            size={"height": s, "width": s}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
        proc = tf.Sam3TrackerVideoProcessor(ip, vp)
    else:
        from garvideo.trackers.hf_tiny import tiny_edgetam_config  # noqa: F401 - same backbone spec

        backbone = tf.TimmWrapperConfig(
            architecture="repvit_m1",
            model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]},
        )
        vision = tf.EdgeTamVisionConfig(backbone_config=backbone)
        model = tf.EdgeTamVideoModel(tf.EdgeTamVideoConfig(vision_config=vision.to_dict()))
        ip = tf.Sam2ImageProcessor(size={"height": 1024, "width": 1024})
        vp = tf.Sam2VideoVideoProcessor(size={"height": 1024, "width": 1024})
        proc = tf.Sam2VideoProcessor(ip, vp)
    return HfVideoTracker(kind, model=model.eval(), processor=proc, device="cpu")


def one(part: str, kind: str, size: int, frames: int, prune: bool = True, folder: str = "") -> dict:
    import torch

    from garvideo.trackers.base import Prompt

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if part == "speed":
        tracker = _real_tracker(kind, size)
        clip = _Clip(frames)
    else:
        from garvideo.trackers.hf_video import HfVideoTracker

        tracker = HfVideoTracker("sam3", checkpoint=folder, device="cpu", prune=prune)
        clip = _Clip(frames, 48, 64)
    params = sum(p.numel() for p in tracker.model.parameters())
    times: list[float] = []
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    box = (40.0, 100.0, 200.0, 260.0) if part == "speed" else (4.0, 10.0, 30.0, 40.0)
    result = tracker.track(clip, [Prompt(obj_id=1, frame=0, box=box)], progress=progress)
    steady = times[1:] or times
    return {
        "part": part,
        "tracker": kind,
        "image_size": size,
        "frames": frames,
        "prune": prune,
        "params_M": round(params / 1e6, 1),
        "s_per_frame": round(float(np.median(steady)), 3),
        "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "memory_entries_max": result.info.get("memory_entries_max"),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        part, kind, size, frames, prune, folder = sys.argv[2:8]
        print(json.dumps(one(part, kind, int(size), int(frames), prune == "1", folder)))
        return 0
    runs = [("speed", "sam3", 1008, 4), ("speed", "edgetam", 1024, 4), ("speed", "sam2", 1024, 4),
            ("speed", "sam2", 512, 4)]  # fmt: skip
    tmp = tempfile.mkdtemp()
    from garvideo.trackers.hf_tiny import make_tiny_sam3

    folder = str(make_tiny_sam3(Path(tmp) / "sam3"))
    short, long = int(os.environ.get("BENCH_SHORT", "25")), int(os.environ.get("BENCH_LONG", "100"))
    mem = [("memory", "sam3", 112, n, p) for n in (short, long) for p in (True, False)]
    rows = []
    load_before = os.getloadavg()
    for r in [*(x + (True,) for x in runs), *mem]:
        part, kind, size, frames, prune = r
        cmd = [
            sys.executable,
            __file__,
            "--one",
            part,
            kind,
            str(size),
            str(frames),
            "1" if prune else "0",
            folder,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            rows.append({"part": part, "tracker": kind, "error": out.stderr.strip().splitlines()[-1][:200]})
        else:
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    info = {"loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(),
            "threads": int(os.environ.get("BENCH_THREADS", "2")), "rows": rows}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(info, indent=2) + "\n")
    print(f"{'part':7} {'tracker':8} {'size':>5} {'frames':>6} {'prune':>5} {'params M':>8} {'s/frame':>8} "
          f"{'peak MB':>8} {'mem entries':>11}")  # fmt: skip
    for r in rows:
        if "error" in r:
            print(f"{r['part']:7} {r['tracker']:8} error: {r['error']}")
            continue
        print(f"{r['part']:7} {r['tracker']:8} {r['image_size']:>5} {r['frames']:>6} {r['prune']!s:>5} "
              f"{r['params_M']:>8} {r['s_per_frame']:>8} {r['peak_rss_MB']:>8} {r['memory_entries_max']!s:>11}")  # fmt: skip
    print(f"load average before/after: {load_before} / {info['loadavg_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
