"""garvideo's ``sam2`` tracker against the OFFICIAL SAM 2 video predictor.

``tests/golden/sam2/*.npz`` hold what ``sam2.build_sam.build_sam2_video_predictor`` (the installed
``sam2`` package) gives on a seeded tiny SAM 2.1 (``init_state`` -> ``add_new_mask`` /
``add_new_points_or_box`` -> ``propagate_in_video()`` -> ``propagate_in_video(reverse=True)``, both
passes written into one dict), with an exact CPU stand-in for ``sam2._C``'s connected components
(``tools/make_sam2_golden.py`` writes them and says how). Here garvideo's tracker runs the same
cases from the same checkpoint: every frame's mask must be equal and the low-resolution logits
within 1e-5. The DAVIS and bedroom cases need ``../shared`` and are skipped without it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sam2")
import torch

ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-5


def _tool():
    if "make_sam2_golden" not in sys.modules:
        spec = importlib.util.spec_from_file_location("make_sam2_golden", ROOT / "tools" / "make_sam2_golden.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["make_sam2_golden"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["make_sam2_golden"]


G = _tool()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sam2golden") / "tiny_sam2.1.pt"
    sha = G.build_tiny_checkpoint(path)
    meta = json.loads((G.GOLDEN / "meta.json").read_text())
    assert sha == meta["checkpoint_sha256"], (
        "the seeded tiny SAM 2.1 is no longer the golden checkpoint (torch's random generator, sam2's "
        "config or TINY_OVERRIDES changed?); regenerate the goldens with tools/make_sam2_golden.py"
    )
    return path


def _shared_case(name: str) -> bool:
    return bool(G.CASES[name].get("shared"))


CASES = [
    pytest.param(n, marks=[pytest.mark.slow] if n == "bedroom_mp4" else []) for n in G.CASES
]


@pytest.mark.parametrize("name", CASES)
def test_masks_and_logits_equal_the_official_predictor(name, checkpoint, tmp_path):
    video = G.case_video(G.CASES[name], tmp_path)
    if video is None:
        pytest.skip("needs ../shared")
    gold = G.load_golden(name)
    import garvideo.trackers.sam2_backend as mod

    got = G.run_garvideo(mod, checkpoint, video, G.case_prompts(G.CASES[name]))
    assert sorted(got["masks"]) == gold["frames"], f"{name}: frames {sorted(got['masks'])} != {gold['frames']}"
    for f in gold["frames"]:
        assert sorted(got["masks"][f]) == gold["obj_ids"], f"{name}: objects on frame {f}"
        for o in gold["obj_ids"]:
            a, b = gold["masks"][f][o], got["masks"][f][o]
            assert a.shape == b.shape, f"{name}: frame {f} object {o}: shape {b.shape} != {a.shape}"
            d = int(np.count_nonzero(a != b))
            assert d == 0, f"{name}: frame {f} object {o}: {d} pixels differ from the official predictor"
    assert gold["logits"], name
    for f, by_obj in gold["logits"].items():
        for o, ref in by_obj.items():
            assert f in got["logits"] and o in got["logits"][f], f"{name}: no logits for frame {f} object {o}"
            err = float(np.abs(got["logits"][f][o] - ref).max())
            assert err <= ATOL, f"{name}: frame {f} object {o}: logits differ by {err:.3g} (> {ATOL})"


# -- the hole-filling stand-in and garvideo's filler ----------------------------------------------------
def _components_bfs(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of a 2-D bool array by breadth-first search: labels (> 0 on m) and
    per-pixel areas (0 off m), written independently of OpenCV."""
    h, w = m.shape
    labels = np.zeros((h, w), np.int32)
    areas = np.zeros((h, w), np.int32)
    nxt = 0
    for y0 in range(h):
        for x0 in range(w):
            if not m[y0, x0] or labels[y0, x0]:
                continue
            nxt += 1
            labels[y0, x0] = nxt
            todo, comp = deque([(y0, x0)]), []
            while todo:
                y, x = todo.popleft()
                comp.append((y, x))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w and m[yy, xx] and not labels[yy, xx]:
                            labels[yy, xx] = nxt
                            todo.append((yy, xx))
            for y, x in comp:
                areas[y, x] = len(comp)
    return labels, areas


def test_connected_components_stand_in_is_the_kernel_contract():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 1, 24, 20)) < 0.45
    masks[0, 0] = False
    masks[0, 0, 5, 5] = masks[0, 0, 6, 6] = True  # diagonal neighbours: one component (8-connectivity)
    labels, counts = G.connected_components(torch.from_numpy(masks))
    assert labels.shape == counts.shape == masks.shape
    for i in range(masks.shape[0]):
        ref_labels, ref_areas = _components_bfs(masks[i, 0])
        got_l, got_c = labels[i, 0].numpy(), counts[i, 0].numpy()
        assert np.array_equal(got_l > 0, masks[i, 0])
        assert np.array_equal(got_c, ref_areas)
        # the same partition (label values may differ)
        pairs = {(a, b) for a, b in zip(got_l[masks[i, 0]], ref_labels[masks[i, 0]])}
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    assert counts[0, 0, 5, 5] == 2


def test_garvideo_hole_filler_equals_sam2s_with_the_stand_in(monkeypatch):
    from sam2.utils import misc

    from garvideo.trackers.sam2_backend import fill_holes_in_logits

    monkeypatch.setattr(misc, "get_connected_components", G.connected_components)
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(0.5, 1.0, (4, 1, 32, 32)).astype(np.float32))
    for area in (1, 8, 40):
        ref = misc.fill_holes_in_mask_scores(logits.clone(), area)
        got = fill_holes_in_logits(logits.clone(), area)
        assert torch.equal(ref, got), area
        assert not torch.equal(ref, logits)  # something was filled


# -- decord's process-wide bridge -----------------------------------------------------------------------
def test_decord_reader_survives_sam2_switching_the_bridge_to_torch():
    decord = pytest.importorskip("decord")
    from garvideo.video import open_video

    mp4 = G.GOLDEN / "inputs" / "synth.mp4"
    with open_video(mp4, backend="decord") as v:
        native = [f for _, f in v.frames([0, 1, 5])]
    try:
        decord.bridge.set_bridge("torch")  # what sam2's load_video_frames_from_video_file does
        with open_video(mp4, backend="decord") as v:
            assert v.info.backend == "decord"
            under_torch = [f for _, f in v.frames([0, 1, 5])]
    finally:
        decord.bridge.set_bridge("native")
    for a, b in zip(native, under_torch, strict=True):
        assert isinstance(b, np.ndarray) and b.dtype == np.uint8 and np.array_equal(a, b)


def test_scaled_decord_reader_gives_the_official_pixels_in_any_order():
    """The S x S reader runs one decoding thread (its memory stays flat over a long clip, see
    docs/sam2.md) and seeks / caches for jumps and backward reads: the pixels must still be those
    of the official predictor's ``VideoReader(path, width=S, height=S)`` with decord's defaults."""
    decord = pytest.importorskip("decord")
    from garvideo.trackers.sam2_backend import _DecordResized

    mp4 = G.GOLDEN / "inputs" / "synth.mp4"
    size = 64
    official = decord.VideoReader(str(mp4), width=size, height=size)  # as load_video_frames_from_video_file
    ref = [official[i].asnumpy() for i in range(len(official))]  # (S, S, 3) uint8 each
    assert len(ref) >= 8
    reader = _DecordResized(str(mp4), size)
    n = len(ref)
    order = [*range(n), n // 2, *range(n // 2 - 1, -1, -1), n - 1, 2, 3]
    for i in order:
        assert np.array_equal(reader(i), ref[i]), i
