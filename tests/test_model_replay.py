"""RoI-aligned feature replay: official (double-scaled) and corrected boxes against hand-computed samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from garvideo.errors import InputError
from garvideo.model import merge_tiles, replay_regions, roi_boxes
from garvideo.model.processing import mask_box


def linear_map(h: int, w: int) -> torch.Tensor:
    """(1, 3, h, w): channel 0 = x, channel 1 = y, channel 2 = 1."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([xs, ys, torch.ones_like(xs)])[None]


def _sample_1d(coord: float, size: int) -> float | None:
    """Where roi_align's bilinear sampling reads a linear function along one axis (None: outside → 0)."""
    if coord < -1.0 or coord > size:
        return None
    return min(max(coord, 0.0), size - 1.0)


def expected_linear(box_feat: list[float], scale: float, h: int, w: int) -> np.ndarray:
    """Hand-computed roi_align(aligned=True, sampling_ratio=2, 16×16) of the linear map: (256, 3)."""
    x0, y0, x1, y1 = (c * scale - 0.5 for c in box_feat)
    bw, bh = (x1 - x0) / 16, (y1 - y0) / 16
    out = np.zeros((16, 16, 3))
    for i in range(16):
        for j in range(16):
            acc = np.zeros(3)
            for ky in range(2):
                for kx in range(2):
                    y = _sample_1d(y0 + (i + (ky + 0.5) / 2) * bh, h)
                    x = _sample_1d(x0 + (j + (kx + 0.5) / 2) * bw, w)
                    if x is not None and y is not None:
                        acc += [x, y, 1.0]
            out[i, j] = acc / 4
    return out.reshape(256, 3)


def test_official_boxes_are_scaled_twice():
    # A 2x2-tile image: a 32x32 feature map, i.e. a 896x896 canvas.
    boxes = torch.tensor([[0.25, 0.25, 0.75, 0.75]])
    rois, scale = roi_boxes(boxes, 32, 32, "official")
    assert scale == pytest.approx(1 / 28)
    assert rois[0] == pytest.approx([8.0, 8.0, 24.0, 24.0])  # feature cells ... and roi_align scales again
    rois_c, scale_c = roi_boxes(boxes, 32, 32, "corrected")
    assert rois_c[0] == pytest.approx([224.0, 224.0, 672.0, 672.0])  # canvas pixels, scaled once
    assert scale_c == scale


def test_corrected_replay_hand_values():
    fmap = linear_map(32, 32)
    out = replay_regions(fmap, [[0.25, 0.25, 0.75, 0.75]], None, "corrected")
    assert out.shape == (1, 256, 3)
    # Box covers feature cells 7.5 .. 23.5 (aligned: -0.5); bin (i, j) is centred on x = 8 + j, y = 8 + i.
    grid = out[0].reshape(16, 16, 3)
    assert torch.allclose(grid[..., 0], (8 + torch.arange(16.0)).expand(16, 16), atol=1e-5)
    assert torch.allclose(grid[..., 1], (8 + torch.arange(16.0))[:, None].expand(16, 16), atol=1e-5)
    assert torch.allclose(grid[..., 2], torch.ones(16, 16))


def test_official_replay_samples_top_left_corner():
    fmap = linear_map(32, 32)
    box = [0.25, 0.25, 0.75, 0.75]
    out = replay_regions(fmap, [box], None, "official")[0].numpy()
    want = expected_linear([8.0, 8.0, 24.0, 24.0], 1 / 28, 32, 32)
    np.testing.assert_allclose(out, want, atol=1e-5)
    # Every sample lies within the first cell: the region itself (cells 8..23) is never read.
    assert out[:, 0].max() < 0.4 and out[:, 1].max() < 0.4
    # Hand value of the last bin: x0 = 8/28 - .5, bin = (16/28)/16; samples at j + .25 and j + .75.
    x0, bw = 8 / 28 - 0.5, (16 / 28) / 16
    last = np.mean([max(x0 + (15 + f) * bw, 0.0) for f in (0.25, 0.75)])
    assert out[255, 0] == pytest.approx(last, abs=1e-6)


def test_corrected_matches_hand_computation_for_odd_box():
    fmap = linear_map(16, 32)  # a 2x1 grid (two tiles across)
    box = [0.1, 0.3, 0.55, 0.9]
    out = replay_regions(fmap, [box], None, "corrected")[0].numpy()
    want = expected_linear([0.1 * 896, 0.3 * 448, 0.55 * 896, 0.9 * 448], 1 / 28, 16, 32)
    np.testing.assert_allclose(out, want, atol=1e-4)


def test_frame_index_selects_the_frame():
    maps = torch.stack([torch.full((3, 16, 16), float(t)) for t in range(4)])  # (T, D, 16, 16)
    out = replay_regions(maps, [[0.1, 0.1, 0.5, 0.5]] * 3, [2, 0, 3], "corrected")
    assert out.shape == (3, 256, 3)
    assert torch.all(out[0] == 2) and torch.all(out[1] == 0) and torch.all(out[2] == 3)


def test_replay_bad_inputs():
    fmap = linear_map(16, 16)
    with pytest.raises(InputError, match="roi_mode"):
        replay_regions(fmap, [[0, 0, 1, 1]], None, "fixed")
    with pytest.raises(InputError, match="frame indices"):
        replay_regions(fmap, [[0, 0, 1, 1]], [1], "official")
    with pytest.raises(InputError, match="frame indices for"):
        replay_regions(fmap, [[0, 0, 1, 1]], [0, 0], "official")
    with pytest.raises(InputError, match="feature_maps"):
        replay_regions(fmap[0], [[0, 0, 1, 1]])
    assert replay_regions(fmap, torch.zeros(0, 4)).shape == (0, 256, 3)


def test_merge_tiles_row_major():
    # 2 across, 3 down; tile k holds the constant k.
    tiles = torch.stack([torch.full((256, 2), float(k)) for k in range(6)])
    fmap = merge_tiles(tiles, ncw=2, nch=3)
    assert fmap.shape == (1, 2, 48, 32)
    for r in range(3):
        for c in range(2):
            assert torch.all(fmap[0, :, 16 * r : 16 * r + 16, 16 * c : 16 * c + 16] == r * 2 + c)


def test_merge_tiles_keeps_token_layout():
    tokens = torch.arange(256.0)[:, None].expand(256, 2)
    fmap = merge_tiles(tokens[None], 1, 1)
    assert fmap[0, 0, 3, 5] == 3 * 16 + 5  # token i*16 + j at row i, column j


def test_mask_box_is_official_inclusive_and_empty_safe():
    m = np.zeros((10, 20), bool)
    m[2:5, 4:9] = True
    assert mask_box(m) == (4 / 20, 2 / 10, 8 / 20, 4 / 10)
    assert mask_box(np.zeros((10, 20), bool)) is None
    assert all(math.isfinite(v) for v in mask_box(np.ones((3, 3), bool)))
