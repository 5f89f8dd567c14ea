#!/usr/bin/env python
"""Regenerate ``tests/golden/sam2/``: masks and low-resolution logits of the OFFICIAL SAM 2 video
predictor on a seeded tiny SAM 2.1, the reference ``tests/test_trackers_sam2_parity.py`` holds garvideo's
``sam2`` tracker to.

The official code is the installed ``sam2`` package (``sam2.build_sam.build_sam2_video_predictor``);
it runs in a subprocess of this interpreter (``_reference`` sub-command), so nothing it sets
process-wide (decord's bridge, hydra's state) reaches garvideo's side. Each case runs as users run
the predictor::

    state = predictor.init_state(path)                  # a JPEG folder or an mp4
    predictor.add_new_mask(...) / add_new_points_or_box(...)   # every prompt, in prompt order
    for f, ids, m in predictor.propagate_in_video(state): out[f] = m > 0
    for f, ids, m in predictor.propagate_in_video(state, reverse=True): out[f] = m > 0  # last wins

on CPU, float32, one thread, with two stand-ins installed in the reference process only:

* ``sam2.utils.misc.get_connected_components`` (the ``sam2._C`` CUDA kernel, absent on CPU, where the
  predictor then silently skips hole filling): :func:`connected_components`, 8-connectivity, labels
  (> 0 on the input's foreground) and per-pixel component areas, as the kernel documents;
* the predictor stores memories as bfloat16; where no float32 object pointer is concatenated with
  them (an object tracked before its prompt frame, ...) the memory attention's float32 matmul
  fails on CPU. :func:`_promote_memory` casts the memory to the query's dtype there, which is what
  ``torch.cat`` does whenever a pointer is present; nothing changes where the predictor runs.

The checkpoint is ``build_sam2_model(CONFIG, IMAGE_SIZE, TINY_OVERRIDES)`` after
``torch.manual_seed(SEED)``; its sha256 goes into ``meta.json`` so the tests say "regenerate" when
torch's generator changes.

Usage (about a minute on 2 cores; the DAVIS and bedroom cases need ``../shared``)::

    python tools/make_sam2_golden.py                  # write tests/golden/sam2
    python tools/make_sam2_golden.py --compare-only   # table: garvideo vs the goldens
    python tools/make_sam2_golden.py --compare-only --tracker-from 8a3b1e9   # ... an older tracker
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "sam2"
SHARED = ROOT.parent / "shared"
CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
SEED = 0
IMAGE_SIZE = 128
LOGIT_FRAMES_MAX = 40  # clips longer than this store the logits of every k-th frame (and prompts)

# -- inputs ---------------------------------------------------------------------------------------------
SYNTH_N, SYNTH_H, SYNTH_W = 36, 96, 128


def synth_frame(i: int) -> np.ndarray:
    """Frame ``i`` of the synthetic clip: a textured square moving right and an ellipse moving down
    over a gradient (deterministic, (H, W, 3) uint8)."""
    yy, xx = np.mgrid[0:SYNTH_H, 0:SYNTH_W]
    im = np.stack([40 + xx * 0.8, 60 + yy * 0.9, 90 + (xx + yy) * 0.3], axis=-1)
    x0 = 8 + 2 * i
    sq = (xx >= x0) & (xx < x0 + 30) & (yy >= 20) & (yy < 50)
    im[sq, 0], im[sq, 1], im[sq, 2] = 210, 170 + 30 * ((xx[sq] // 4 + yy[sq] // 4) % 2), 40
    cy = 30 + i
    el = ((xx - 90) / 16.0) ** 2 + ((yy - cy) / 10.0) ** 2 <= 1
    im[el] = (60, 200, 220)
    return np.clip(im, 0, 255).astype(np.uint8)


def synth_masks(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of frame ``i``: the square, the ellipse ((H, W) bool each)."""
    yy, xx = np.mgrid[0:SYNTH_H, 0:SYNTH_W]
    x0 = 8 + 2 * i
    sq = (xx >= x0) & (xx < x0 + 30) & (yy >= 20) & (yy < 50)
    el = ((xx - 90) / 16.0) ** 2 + ((yy - (30 + i)) / 10.0) ** 2 <= 1
    return sq, el


def write_synth_inputs(folder: Path) -> None:
    """The synthetic JPEG folder and mp4 (committed beside the goldens: encoders may change)."""
    import cv2
    from PIL import Image

    jpg = folder / "synth_jpg"
    jpg.mkdir(parents=True, exist_ok=True)
    for i in range(SYNTH_N):
        Image.fromarray(synth_frame(i)).save(jpg / f"{i:05d}.jpg", quality=90)
    w = cv2.VideoWriter(str(folder / "synth.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (SYNTH_W, SYNTH_H))
    for i in range(20):
        w.write(cv2.cvtColor(synth_frame(i), cv2.COLOR_RGB2BGR))
    w.release()


def _mask(spec: dict) -> np.ndarray:
    if spec["source"] == "synth":
        return synth_masks(spec["frame"])[spec["which"]]
    if spec["source"] == "ellipse":  # an ellipse (cx, cy, rx, ry) on an (h, w) frame
        (h, w), (cx, cy, rx, ry) = spec["size"], spec["ellipse"]
        yy, xx = np.mgrid[0:h, 0:w]
        return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    from PIL import Image

    ann = np.asarray(Image.open(SHARED / "data" / "davis2016" / "Annotations" / "480p" / spec["seq"] /
                                f"{spec['frame']:05d}.png"))  # fmt: skip
    return ann > 0


def _square(i: int) -> tuple[float, float, float, float]:
    return (8.0 + 2 * i, 20.0, 8.0 + 2 * i + 29, 49.0)


SYN = {"kind": "jpg", "path": "synth_jpg"}
MP4 = {"kind": "mp4", "path": "synth.mp4"}
CASES: dict[str, dict] = {
    "mask_first_frame": {"video": SYN, "prompts": [
        {"obj": 1, "frame": 0, "mask": {"source": "synth", "frame": 0, "which": 0}}]},
    "mask_middle_frame": {"video": SYN, "prompts": [
        {"obj": 1, "frame": 17, "mask": {"source": "synth", "frame": 17, "which": 0}}]},
    "two_objects": {"video": SYN, "prompts": [
        {"obj": 1, "frame": 5, "mask": {"source": "synth", "frame": 5, "which": 0}},
        {"obj": 2, "frame": 5, "mask": {"source": "synth", "frame": 5, "which": 1}}]},
    "points_negative_click": {"video": SYN, "prompts": [
        {"obj": 1, "frame": 8, "points": [[35.0, 30.0], [100.0, 80.0]], "labels": [1, 0]}]},
    "box": {"video": SYN, "prompts": [{"obj": 1, "frame": 12, "box": list(_square(12))}]},
    "objects_on_different_frames": {"video": SYN, "prompts": [
        {"obj": 1, "frame": 4, "mask": {"source": "synth", "frame": 4, "which": 0}},
        {"obj": 2, "frame": 14, "mask": {"source": "synth", "frame": 14, "which": 1}}]},
    "one_object_two_prompt_frames": {"video": SYN, "prompts": [
        {"obj": 1, "frame": 3, "mask": {"source": "synth", "frame": 3, "which": 0}},
        {"obj": 1, "frame": 25, "box": list(_square(25))}]},
    "past_the_memory_window": {"video": SYN, "prompts": [  # 36 frames, num_maskmem 7, 16 pointers
        {"obj": 1, "frame": 30, "mask": {"source": "synth", "frame": 30, "which": 0}},
        {"obj": 2, "frame": 30, "mask": {"source": "synth", "frame": 30, "which": 1}}]},
    "mp4_synthetic": {"video": MP4, "prompts": [
        {"obj": 1, "frame": 9, "mask": {"source": "synth", "frame": 9, "which": 0}},
        {"obj": 2, "frame": 9, "points": [[90.0, 39.0]], "labels": [1]}]},
    "davis_blackswan_jpg": {"video": {"kind": "davis", "seq": "blackswan", "frames": 24}, "shared": True,
                            "prompts": [{"obj": 1, "frame": 10,
                                         "mask": {"source": "davis", "seq": "blackswan", "frame": 10}}]},
    "bedroom_mp4": {"video": {"kind": "shared_mp4", "path": "data/clips/bedroom.mp4"}, "shared": True,
                    "prompts": [{"obj": 1, "frame": 100, "mask": {"source": "ellipse", "size": [540, 960],
                                                                  "ellipse": [450, 320, 160, 110]}},
                                {"obj": 2, "frame": 120, "box": [600.0, 150.0, 900.0, 400.0]}]},
}  # fmt: skip


def case_video(case: dict, scratch: Path) -> Path | None:
    """Path of the case's clip as the official predictor reads it (``None``: ../shared missing)."""
    v = case["video"]
    if v["kind"] in ("jpg", "mp4"):
        return GOLDEN / "inputs" / v["path"]
    if v["kind"] == "shared_mp4":
        p = SHARED / v["path"]
        return p if p.is_file() else None
    src = SHARED / "data" / "davis2016" / "JPEGImages" / "480p" / v["seq"]
    if not src.is_dir():
        return None
    dst = scratch / v["seq"]  # the first frames only: the predictor reads a whole folder
    dst.mkdir(parents=True, exist_ok=True)
    for i in range(v["frames"]):
        (dst / f"{i:05d}.jpg").write_bytes((src / f"{i:05d}.jpg").read_bytes())
    return dst


def case_prompts(case: dict) -> list[dict]:
    """The prompts with their masks made: dicts with obj, frame and one of mask/points+labels/box."""
    out = []
    for p in case["prompts"]:
        q = {k: v for k, v in p.items() if k != "mask"}
        if "mask" in p:
            q["mask"] = _mask(p["mask"])
        out.append(q)
    return out


# -- checkpoint -----------------------------------------------------------------------------------------
def state_dict_sha256(sd: dict) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict, in key order."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def build_tiny_checkpoint(path: Path) -> str:
    """Write the seeded tiny SAM 2.1 in the official layout (``{"model": state_dict}``); its sha256."""
    import torch

    from garvideo.trackers.sam2_backend import TINY_OVERRIDES, build_sam2_model

    torch.manual_seed(SEED)
    model = build_sam2_model(CONFIG, image_size=IMAGE_SIZE, extra_overrides=TINY_OVERRIDES)
    sd = model.state_dict()
    torch.save({"model": sd}, path)
    return state_dict_sha256(sd)


# -- the reference stand-ins ----------------------------------------------------------------------------
def connected_components(mask):
    """Exact CPU stand-in for ``sam2._C.get_connected_componnets``: for (N, 1, H, W) binary masks,
    (labels, counts), both (N, 1, H, W) int32: 8-connected components of the foreground (1), each
    foreground pixel labelled > 0 and given its component's area, background 0 in both. Label
    values differ from the kernel's (which numbers components by pixel index); sam2 only tests
    ``labels > 0`` and the areas."""
    import cv2
    import torch

    m = mask.to(torch.uint8).cpu().numpy()
    labels = np.zeros(m.shape, dtype=np.int32)
    counts = np.zeros(m.shape, dtype=np.int32)
    for i in range(m.shape[0]):
        _, lab, stats, _ = cv2.connectedComponentsWithStats(m[i, 0], connectivity=8, ltype=cv2.CV_32S)
        area = stats[:, cv2.CC_STAT_AREA].astype(np.int32)
        area[0] = 0
        labels[i, 0] = lab
        counts[i, 0] = area[lab]
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(counts).to(mask.device)


def _promote_memory(memory_attention) -> None:
    inner = memory_attention.forward

    def forward(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        dtype = (curr[0] if isinstance(curr, list) else curr).dtype
        if memory.dtype != dtype:
            memory = memory.to(dtype)
        return inner(curr=curr, memory=memory, curr_pos=curr_pos, memory_pos=memory_pos,
                     num_obj_ptr_tokens=num_obj_ptr_tokens)  # fmt: skip

    memory_attention.forward = forward


def _logit_frames(n: int, prompt_frames: list[int]) -> list[int]:
    if n <= LOGIT_FRAMES_MAX:
        return list(range(n))
    k = -(-n // LOGIT_FRAMES_MAX)
    return sorted(set(range(0, n, k)) | set(prompt_frames))


def reference(ckpt: str, video: str, prompts_file: str, out: str) -> None:
    """Run the official predictor on one case (in its own process) and save its outputs."""
    import pickle

    import torch

    torch.set_num_threads(1)
    from sam2.build_sam import build_sam2_video_predictor
    from sam2.utils import misc

    from garvideo.trackers.sam2_backend import TINY_OVERRIDES

    misc.get_connected_components = connected_components  # fill_holes_in_mask_scores looks it up here
    overrides = [*TINY_OVERRIDES, f"++model.image_size={IMAGE_SIZE}"]
    predictor = build_sam2_video_predictor(CONFIG, ckpt, device="cpu", hydra_overrides_extra=overrides)
    _promote_memory(predictor.memory_attention)
    prompts = pickle.loads(Path(prompts_file).read_bytes())
    with torch.inference_mode():
        state = predictor.init_state(video)
        for p in prompts:
            if "mask" in p:
                predictor.add_new_mask(state, p["frame"], p["obj"], p["mask"])
            else:
                predictor.add_new_points_or_box(
                    state, p["frame"], p["obj"], points=p.get("points"), labels=p.get("labels"), box=p.get("box")
                )
        masks: dict[int, dict[int, np.ndarray]] = {}
        logits: dict[int, dict[int, np.ndarray]] = {}
        for reverse in (False, True):
            for f, ids, video_res in predictor.propagate_in_video(state, reverse=reverse):
                masks[f] = {int(o): (video_res[i, 0] > 0).numpy() for i, o in enumerate(ids)}
                logits[f] = {}
                for i, o in enumerate(ids):
                    od = state["output_dict_per_obj"][i]
                    e = od["cond_frame_outputs"].get(f) or od["non_cond_frame_outputs"][f]
                    logits[f][int(o)] = e["pred_masks"][0, 0].float().numpy()
    n = state["num_frames"]
    keep = _logit_frames(n, [p["frame"] for p in prompts])
    frames = sorted(masks)
    ids = sorted({o for f in frames for o in masks[f]})
    h, w = state["video_height"], state["video_width"]
    np.savez_compressed(
        out,
        frames=np.array(frames, np.int32),
        obj_ids=np.array(ids, np.int32),
        shape=np.array([h, w], np.int32),
        masks=np.stack([np.stack([np.packbits(masks[f][o].ravel()) for o in ids]) for f in frames]),
        logit_frames=np.array(keep, np.int32),
        logits=np.stack([np.stack([logits[f][o] for o in ids]) for f in keep]).astype(np.float32),
    )


def run_reference(ckpt: Path, video: Path, prompts: list[dict], out: Path) -> None:
    import pickle

    pf = out.with_suffix(".prompts.pkl")
    pf.write_bytes(pickle.dumps(prompts))
    cmd = [sys.executable, __file__, "_reference", str(ckpt), str(video), str(pf), str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    pf.unlink()


# -- garvideo's side ------------------------------------------------------------------------------------
def load_golden(name: str) -> dict:
    """A case's golden outputs: frames, obj_ids, masks[f][o] (H, W) bool, logits[f][o] (S/4, S/4)."""
    z = np.load(GOLDEN / f"{name}.npz")
    h, w = (int(v) for v in z["shape"])
    ids = [int(o) for o in z["obj_ids"]]
    masks = {int(f): {o: np.unpackbits(z["masks"][i, j])[: h * w].reshape(h, w).astype(bool)
                      for j, o in enumerate(ids)} for i, f in enumerate(z["frames"])}  # fmt: skip
    logits = {int(f): {o: z["logits"][i, j] for j, o in enumerate(ids)} for i, f in enumerate(z["logit_frames"])}
    return {"frames": [int(f) for f in z["frames"]], "obj_ids": ids, "masks": masks, "logits": logits}


def load_tracker_module(rev: str | None):
    """garvideo's sam2 backend module: this tree's, or (``rev``) the one of a git revision (its
    ``trackers/base.py`` and ``trackers/sam2_backend.py`` loaded in place of this tree's)."""
    if rev is None:
        import garvideo.trackers.sam2_backend as mod

        return mod
    import garvideo.trackers  # noqa: F401 - the package first

    tmp = Path(tempfile.mkdtemp())
    for name in ("base", "sam2_backend"):
        src = subprocess.run(["git", "show", f"{rev}:trackers/{name}.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        (tmp / f"{name}.py").write_text(src)
        spec = importlib.util.spec_from_file_location(f"garvideo.trackers.{name}", tmp / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[f"garvideo.trackers.{name}"] = mod
        spec.loader.exec_module(mod)
    return mod


def run_garvideo(mod, ckpt: Path, video: Path, prompts: list[dict]) -> dict:
    """garvideo's sam2 tracker on a case: masks[f][o], logits[f][o] (the last written, as kept)."""
    import torch

    from garvideo.video import open_video

    base = sys.modules[mod.Tracker.__module__]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = mod.build_sam2_model(CONFIG, image_size=IMAGE_SIZE, extra_overrides=mod.TINY_OVERRIDES)
        mod.load_sam2_checkpoint(model, str(ckpt))
        logits: dict[int, dict[int, np.ndarray]] = {}

        def keep(frame: int, obj: int, low: np.ndarray) -> None:
            logits.setdefault(frame, {})[obj] = low

        try:
            trk = mod.Sam2Tracker(model=model, device="cpu", logits_callback=keep)
        except TypeError:  # an older tracker: catch the low-res logits where it turns them into masks
            trk = mod.Sam2Tracker(model=model, device="cpu")
            candidates: dict[tuple[int, int], list] = {}
            old_step, old_out = mod._Sam2Session.step, mod._Sam2Session._to_output

            def to_output(self, low, score_logit):
                res = old_out(self, low, score_logit)
                self._lows.append((res[0], low[0, 0].float().cpu().numpy()))
                return res

            def step(self, frame_idx, image, prompts):
                self._lows = []
                out = old_step(self, frame_idx, image, prompts)
                lows = iter(self._lows)
                for oid in out:
                    if any(p.obj_id == oid and p.mask is not None for p in prompts):
                        continue  # the mask prompt itself: no logits
                    mm, low = next(lows)
                    candidates.setdefault((frame_idx, oid), []).append((mm, low))
                return out

            mod._Sam2Session._to_output, mod._Sam2Session.step = to_output, step
        ps = []
        for p in prompts:
            kw = {k: p[k] for k in ("mask", "box") if k in p}
            if "box" in kw:
                kw["box"] = tuple(kw["box"])
            if "points" in p:
                kw["points"], kw["labels"] = np.array(p["points"]), np.array(p["labels"])
            ps.append(base.Prompt(p["obj"], p["frame"], **kw))
        with open_video(video) as v:
            r = trk.track(v, ps)
        masks = {f: {o: r.mask(f, o) for o in r.object_ids if r.tracked(f, o)} for f in r.frames}
        if not logits and "candidates" in locals():  # the older tracker: the kept estimate's logits
            for (f, o), cands in candidates.items():
                for mm, low in cands:
                    if np.array_equal(mm, masks[f].get(o)):
                        logits.setdefault(f, {})[o] = low
        return {"masks": masks, "logits": logits}
    finally:
        torch.set_num_threads(threads)


def compare(gold: dict, got: dict) -> dict:
    """Per-case figures: IoU min/mean over (frame, object), pixels differing, max |logit diff|."""
    ious, diff_px, diff_frames, max_logit = [], 0, 0, 0.0
    for f in gold["frames"]:
        frame_differs = False
        for o in gold["obj_ids"]:
            a = gold["masks"][f][o]
            b = got["masks"].get(f, {}).get(o, np.zeros_like(a))
            union = np.count_nonzero(a | b)
            ious.append(1.0 if union == 0 else np.count_nonzero(a & b) / union)
            d = int(np.count_nonzero(a != b))
            diff_px += d
            frame_differs |= d > 0
            if f in gold["logits"] and f in got["logits"] and o in got["logits"][f]:
                max_logit = max(max_logit, float(np.abs(gold["logits"][f][o] - got["logits"][f][o]).max()))
            elif f in gold["logits"]:
                max_logit = float("nan") if not got["logits"] else max_logit
        diff_frames += frame_differs
    return {"iou_min": float(min(ious)), "iou_mean": float(np.mean(ious)), "pixels_differing": diff_px,
            "frames_differing": diff_frames, "frames": len(gold["frames"]), "max_logit_diff": max_logit}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_reference"]:
        reference(*argv[1:5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compare-only", action="store_true", help="compare garvideo with the goldens, write nothing")
    ap.add_argument("--tracker-from", metavar="REV", help="with --compare-only: garvideo's tracker at this git rev")
    ap.add_argument("--cases", nargs="*", help="only these cases")
    ap.add_argument("--json", metavar="FILE", help="with --compare-only: also write the table as JSON")
    args = ap.parse_args(argv)
    names = args.cases or list(CASES)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        ckpt = tmp / "tiny_sam2.1.pt"
        sha = build_tiny_checkpoint(ckpt)
        if not args.compare_only:
            GOLDEN.mkdir(parents=True, exist_ok=True)
            write_synth_inputs(GOLDEN / "inputs")
            meta = {"checkpoint_sha256": sha, "seed": SEED, "config": CONFIG, "image_size": IMAGE_SIZE,
                    "tiny_overrides": "garvideo.trackers.sam2_backend.TINY_OVERRIDES", "cases": {}}  # fmt: skip
            import sam2
            import torch

            meta["torch"], meta["sam2"] = torch.__version__, getattr(sam2, "__version__", "installed")
            for name in names:
                case = CASES[name]
                video = case_video(case, tmp)
                if video is None:
                    print(f"{name}: skipped (../shared missing)")
                    continue
                run_reference(ckpt, video, case_prompts(case), GOLDEN / f"{name}.npz")
                meta["cases"][name] = {"video": case["video"], "prompts": case["prompts"]}
                print(f"{name}: written ({(GOLDEN / f'{name}.npz').stat().st_size // 1024} KB)")
            old = json.loads((GOLDEN / "meta.json").read_text()) if (GOLDEN / "meta.json").is_file() else {}
            if args.cases and old:  # a partial run keeps the other cases
                meta["cases"] = {**old.get("cases", {}), **meta["cases"]}
            (GOLDEN / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
            return 0
        mod = load_tracker_module(args.tracker_from)
        rows = {}
        print(f"{'case':32s} {'IoU min':>8s} {'IoU mean':>9s} {'px differ':>10s} {'frames':>8s} {'max |dlogit|':>13s}")
        for name in names:
            video = case_video(CASES[name], tmp)
            if video is None or not (GOLDEN / f"{name}.npz").is_file():
                print(f"{name:32s} skipped")
                continue
            row = compare(load_golden(name), run_garvideo(mod, ckpt, video, case_prompts(CASES[name])))
            rows[name] = row
            print(f"{name:32s} {row['iou_min']:8.4f} {row['iou_mean']:9.4f} {row['pixels_differing']:10d} "
                  f"{row['frames_differing']:>3d}/{row['frames']:<4d} {row['max_logit_diff']:13.3g}")  # fmt: skip
        if args.json:
            Path(args.json).write_text(json.dumps({"tracker_from": args.tracker_from or "worktree",
                                                   "cases": rows}, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
