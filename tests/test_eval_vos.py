"""DAVIS J and F (garvideo.eval.vos) on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from garvideo.eval.vos import boundary_map, boundary_tolerance, evaluate_sequence, f_measure, jaccard


def _half(cols: int, size: int = 100) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[:, :cols] = True
    return m


def test_jaccard_hand_cases():
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True  # 16 px
    b = np.zeros((10, 10), bool)
    b[2:6, 3:7] = True  # shifted one column: 12 shared, 20 in the union
    assert jaccard(a, b) == pytest.approx(12 / 20)
    assert jaccard(a, a) == 1.0
    empty = np.zeros((10, 10), bool)
    assert jaccard(empty, empty) == 1.0  # both empty: 1, as DAVIS
    assert jaccard(a, empty) == 0.0
    assert jaccard(empty, a) == 0.0


def test_boundary_map_single_pixel():
    # A pixel differs from its right, lower and lower-right neighbours: the boundary of a single
    # pixel at (2, 2) is offset half a pixel towards the origin: {(1,1), (1,2), (2,1), (2,2)}.
    m = np.zeros((5, 5), bool)
    m[2, 2] = True
    got = {tuple(p) for p in np.argwhere(boundary_map(m))}
    assert got == {(1, 1), (1, 2), (2, 1), (2, 2)}


def test_boundary_map_half_plane_is_one_column():
    b = boundary_map(_half(50))
    assert np.array_equal(np.nonzero(b.any(axis=0))[0], [49])
    assert b[:, 49].sum() == 100


def test_tolerance_is_0008_of_diagonal():
    assert boundary_tolerance((100, 100)) == 2  # ceil(0.008 * 141.4) = ceil(1.13)
    assert boundary_tolerance((480, 854)) == 8  # ceil(0.008 * 979.6) = ceil(7.84)
    assert boundary_tolerance((480, 854), bound_th=3) == 3


def test_f_measure_hand_cases():
    gt = _half(50)  # boundary: column 49
    assert f_measure(gt, gt) == 1.0
    assert f_measure(gt, _half(52)) == 1.0  # 2 px away: inside the radius-2 disk
    assert f_measure(gt, _half(53)) == 0.0  # 3 px away: nothing matches
    empty = np.zeros_like(gt)
    assert f_measure(empty, empty) == 1.0
    assert f_measure(gt, empty) == 0.0  # P = 1, R = 0
    assert f_measure(empty, gt) == 0.0  # P = 0, R = 1
    # A far extra blob: its 4 boundary pixels are unmatched -> P = 100/104, R = 1.
    pred = gt.copy()
    pred[10, 90] = True
    p = 100 / 104
    assert f_measure(gt, pred) == pytest.approx(2 * p / (p + 1))


def test_evaluate_sequence_excludes_first_frame():
    a = _half(50)
    b = _half(60)
    empty = np.zeros_like(a)
    s = evaluate_sequence([a, a, a], [empty, a, b])
    assert s.frames == [1, 2]
    assert s.j == pytest.approx((1.0 + 50 / 60) / 2)
    assert s.f == pytest.approx(0.5)
    assert s.jf == pytest.approx((s.j + s.f) / 2)
    s2 = evaluate_sequence([a, a, a], [empty, a, b], exclude_last=True)
    assert s2.frames == [1] and s2.j == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        jaccard(np.zeros((3, 3), bool), np.zeros((3, 4), bool))
