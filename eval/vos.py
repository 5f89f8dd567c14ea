"""Video object segmentation metrics: DAVIS region similarity J and boundary accuracy F.

Definitions follow the DAVIS evaluation (Perazzi et al., CVPR 2016; Pont-Tuset et al., 2017), as
implemented in davisvideochallenge/davis2017-evaluation ``davis2017/metrics.py``:

* J (``db_eval_iou``): intersection over union of the binary masks; 1 when both are empty.
* F (``f_measure``): boundary precision/recall F-measure. Boundaries are one-pixel maps from
  ``_seg2bmap`` (a pixel is on the boundary when it differs from its right, lower or lower-right
  neighbour; last row compared with its right neighbour only, last column with the one below, the
  corner pixel never), each dilated with a disk of radius ``ceil(0.008 * image diagonal)``; a
  boundary pixel of one mask matches when it lies inside the other's dilated boundary. Empty
  boundaries: both empty -> P = R = 1; prediction empty only -> P = 1, R = 0; ground truth empty
  only -> P = 0, R = 1. F = 2PR / (P + R), 0 when P + R = 0.
* Sequences: the prompt (first) frame is excluded; the DAVIS-2017 semi-supervised evaluation
  also drops the last frame (``evaluation.py``: ``all_gt_masks[:, 1:-1]``), available here as
  ``exclude_last=True``.

This module is garvideo's own code; only the definitions above are taken from the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Boundary tolerance as a fraction of the image diagonal (davis2017 metrics.py, bound_th=0.008).
BOUND_TH = 0.008


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.ndim != 2 or pred.ndim != 2:
        raise ValueError(f"masks must be 2-D (H, W), got {gt.shape} and {pred.shape}")
    if gt.shape != pred.shape:
        raise ValueError(f"mask shapes differ: ground truth {gt.shape}, prediction {pred.shape}")
    return gt.astype(bool), pred.astype(bool)


def jaccard(gt: np.ndarray, pred: np.ndarray) -> float:
    """Region similarity J: IoU of two (H, W) binary masks; 1.0 when both are empty."""
    gt, pred = _check_pair(gt, pred)
    union = np.count_nonzero(gt | pred)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(gt & pred) / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool one-pixel boundary of a binary mask, as DAVIS's ``_seg2bmap`` defines it.

    A pixel is a boundary pixel when it differs from its right, lower or lower-right neighbour
    (pixels beyond the image count as background for the right/lower shifts); the last row is
    compared with its right neighbour only, the last column with its lower neighbour only, and the
    bottom-right pixel is never a boundary pixel.
    """
    seg = np.asarray(mask).astype(bool)
    if seg.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got {seg.shape}")
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    b[-1, :] = seg[-1, :] ^ east[-1, :]
    b[:, -1] = seg[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 disk: 1 where x^2 + y^2 <= r^2 (the structuring element DAVIS uses)."""
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return ((xx * xx + yy * yy) <= r * r).astype(np.uint8)


def boundary_tolerance(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Dilation radius in pixels: ``bound_th`` itself when >= 1, else ceil(bound_th * diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(shape[0], shape[1]))


def f_measure(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary accuracy F of a predicted (H, W) mask against the ground truth (see module doc)."""
    gt, pred = _check_pair(gt, pred)
    radius = boundary_tolerance(gt.shape, bound_th)
    kernel = _disk(radius)
    gt_b = boundary_map(gt)
    pr_b = boundary_map(pred)
    n_gt = int(np.count_nonzero(gt_b))
    n_pr = int(np.count_nonzero(pr_b))
    if n_pr == 0 and n_gt == 0:
        return 1.0
    if n_pr == 0 or n_gt == 0:
        return 0.0  # (P, R) = (1, 0) or (0, 1): F = 0
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
    pr_dil = cv2.dilate(pr_b.astype(np.uint8), kernel).astype(bool)
    precision = np.count_nonzero(pr_b & gt_dil) / n_pr
    recall = np.count_nonzero(gt_b & pr_dil) / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


@dataclass
class SequenceScore:
    """J, F and J&F of one sequence (means over the evaluated frames), and the per-frame values."""

    j: float
    f: float
    jf: float
    j_per_frame: list[float]
    f_per_frame: list[float]
    frames: list[int]


def evaluate_sequence(
    gt_masks: Sequence[np.ndarray],
    pred_masks: Sequence[np.ndarray],
    *,
    exclude_first: bool = True,
    exclude_last: bool = False,
    bound_th: float = BOUND_TH,
) -> SequenceScore:
    """Mean J, F and J&F of one object over a sequence.

    Args:
        gt_masks: ground-truth (H, W) masks, one per frame.
        pred_masks: predicted (H, W) masks, same count and size.
        exclude_first: leave out frame 0 (the prompt frame), as DAVIS does.
        exclude_last: also leave out the last frame (the DAVIS-2017 evaluation code does).
        bound_th: boundary tolerance (fraction of the diagonal, or pixels when >= 1).
    """
    if len(gt_masks) != len(pred_masks):
        raise ValueError(f"{len(gt_masks)} ground-truth masks but {len(pred_masks)} predictions")
    idx = list(range(len(gt_masks)))
    if exclude_first:
        idx = idx[1:]
    if exclude_last:
        idx = idx[:-1]
    if not idx:
        raise ValueError("no frames left to evaluate")
    js = [jaccard(gt_masks[i], pred_masks[i]) for i in idx]
    fs = [f_measure(gt_masks[i], pred_masks[i], bound_th) for i in idx]
    j = float(np.mean(js))
    f = float(np.mean(fs))
    return SequenceScore(j=j, f=f, jf=(j + f) / 2, j_per_frame=js, f_per_frame=fs, frames=idx)
