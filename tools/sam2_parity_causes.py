#!/usr/bin/env python
"""Put back, one at a time, each cause of difference listed in the SAM 2 parity analysis and run
``tests/test_trackers_sam2_parity.py`` on a few cases: each must make the parity tests fail.

Each cause is a monkeypatch of ``garvideo.trackers.sam2_backend`` that restores what garvideo did
before (commit 8a3b1e9) for that one aspect, installed before the tests run (one pytest process
per cause). Prints, per cause, the first failing test and its message.

Usage::

    python tools/sam2_parity_causes.py            # all causes
    python tools/sam2_parity_causes.py resize     # one
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# cause -> the parity cases it runs on (a few fast ones where it acts)
CASES = {
    "hole_filling": "mask_middle_frame",
    "resize": "mask_first_frame or mp4_synthetic",
    "reverse_fresh_state": "mask_middle_frame",
    "objects_from_own_prompt": "objects_on_different_frames",
    "prompt_mask_as_output": "mask_first_frame",
    "mask_prompt_inter_area": "two_objects or davis_blackswan_jpg",
    "prompt_memory_sigmoid": "mask_first_frame",
    "output_cv2_resize": "davis_blackswan_jpg or bedroom_mp4 or two_objects",
    "no_bf16_storage": "not bedroom_mp4",
    "pass_local_frame_numbers": "past_the_memory_window",
}


def install(cause: str) -> None:
    import cv2
    import numpy as np
    import torch

    import garvideo.trackers.sam2_backend as m

    if cause == "hole_filling":  # a CPU-only official install: no _C, holes not filled
        m.fill_holes_in_logits = lambda low, max_area: low
    elif cause == "resize":  # cv2 INTER_CUBIC on the decoded frame, for folders and mp4 alike
        def tensor(self, frame_idx, image):
            s = self.size
            x = cv2.resize(image, (s, s), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
            x = (x - m._MEAN) / m._STD
            return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

        m._FrameSource.tensor = tensor
    elif cause == "reverse_fresh_state":  # the backward pass starts from an empty memory
        orig = m.Sam2Tracker._open_session

        def open_session(self, video, direction, order):
            if direction == "backward":
                self._run = None
            return orig(self, video, direction, order)

        m.Sam2Tracker._open_session = open_session
    elif cause == "objects_from_own_prompt":  # an object starts at its own (first) prompt frame
        orig = m._Sam2Session.step

        def step(self, frame_idx, image, prompts):
            run = self.run
            first = {o: min(t for t in od["cond_frame_outputs"]) for o, od in run.mem.items()}
            keep = run.obj_ids
            run.obj_ids = [o for o in keep if self.reverse or run.index[frame_idx] >= first[o]]
            try:
                return orig(self, frame_idx, image, prompts)
            finally:
                run.obj_ids = keep

        m._Sam2Session.step = step
    elif cause == "prompt_mask_as_output":  # a mask prompt is its own output
        orig = m._Sam2Session.step

        def step(self, frame_idx, image, prompts):
            out = orig(self, frame_idx, image, prompts)
            for p in prompts:
                if p.mask is not None:
                    out[p.obj_id] = (np.asarray(p.mask, bool), 1.0)
            return out

        m._Sam2Session.step = step
    elif cause == "mask_prompt_inter_area":
        orig = m._Sam2Run._prompt_inputs

        def prompt_inputs(self, p):
            if p.mask is None:
                return orig(self, p)
            s = self.model.image_size
            r = cv2.resize(np.asarray(p.mask).astype(np.float32), (s, s), interpolation=cv2.INTER_AREA)
            return None, torch.from_numpy((r >= 0.5).astype(np.float32))[None, None]

        m._Sam2Run._prompt_inputs = prompt_inputs
    elif cause == "prompt_memory_sigmoid":  # prompt memory from sigmoid(logits), not binarised
        orig = m._Sam2Run._add_prompts

        def add_prompts(self, prompts):
            enc = self.model._encode_new_memory
            self.model._encode_new_memory = lambda **kw: enc(**{**kw, "is_mask_from_pts": False})
            try:
                orig(self, prompts)
            finally:
                del self.model._encode_new_memory

        m._Sam2Run._add_prompts = add_prompts
    elif cause == "output_cv2_resize":
        orig = m._Sam2Run.output

        def output(self, frame, obj_id, low, score_logit):
            _, score = orig(self, frame, obj_id, low, score_logit)
            lo = low[0, 0].float().cpu().numpy()
            return cv2.resize(lo, (self.w, self.h), interpolation=cv2.INTER_LINEAR) > 0, score

        m._Sam2Run.output = output
    elif cause == "no_bf16_storage":  # memories kept in float32 (not rounded through bfloat16)
        def entry(self, cur):
            if self.pos_enc is None and cur.get("maskmem_pos_enc") is not None:
                self.pos_enc = cur["maskmem_pos_enc"]
            return {"maskmem_features": cur["maskmem_features"], "maskmem_pos_enc": self.pos_enc,
                    "obj_ptr": cur["obj_ptr"], "object_score_logits": cur["object_score_logits"]}  # fmt: skip

        m._Sam2Run._entry = entry
    elif cause == "pass_local_frame_numbers":  # the model told the pass length as the clip length
        orig = m.Sam2Tracker._open_session

        def open_session(self, video, direction, order):
            s = orig(self, video, direction, order)
            if direction == "forward":
                s.run.num_frames = len(order)
            return s

        m.Sam2Tracker._open_session = open_session
    else:
        raise SystemExit(f"unknown cause {cause!r} (choose from {', '.join(CASES)})")


class _Plugin:
    def __init__(self, cause: str) -> None:
        self.cause = cause

    def pytest_configure(self, config) -> None:
        install(self.cause)


def main() -> int:
    if sys.argv[1:2] == ["_one"]:
        import pytest

        cause = sys.argv[2]
        return pytest.main(["-q", "-x", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_trackers_sam2_parity.py"),
                            "-k", CASES[cause]], plugins=[_Plugin(cause)])  # fmt: skip
    failed_all = True
    for cause in sys.argv[1:] or list(CASES):
        cmd = [sys.executable, __file__, "_one", cause]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("FAILED", "E   "))]
        msg = next((ln for ln in lines if ln.startswith("FAILED")), "PASSED (the cause is not caught!)")
        why = next((ln[4:].strip() for ln in lines if ln.startswith("E   ") and "Error" in ln), "")
        print(f"{cause}: rc={r.returncode}\n    {msg.split(' - ')[0]}\n    {why}")
        failed_all &= r.returncode != 0
    return 0 if failed_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
