"""Mask geometry for the flow tracker: boxes, distances to a mask, holes, and the guided filter that snaps
a soft mask to image edges. All on (h, w) arrays at the working resolution unless said otherwise.
"""

from __future__ import annotations

import cv2
import numpy as np

#: (x0, y0, x1, y1) of a mask, in pixels, exclusive of x1 and y1 (floats: a box may be moved by a velocity).
Box = tuple[float, float, float, float]


def bbox(mask: np.ndarray) -> Box | None:
    """The bounding box of the (h, w) mask's nonzero pixels, or None for an empty mask."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    if w == 0 or h == 0:
        return None
    return float(x), float(y), float(x + w), float(y + h)


def distance_crop(mask: np.ndarray, reach: float) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """Euclidean distance of every pixel to the nearest pixel of the (h, w) bool mask, on the mask's box
    widened by ``reach`` only.

    ``dist <= r`` is the mask dilated by a disc of radius r (r <= ``reach``), at a cost that does not grow
    with r (a dilation with a large elliptical kernel dominated the tracker's time at full resolution).
    The whole mask lies in the widened box, so the distances there are the same as on the whole frame,
    and outside it every distance exceeds ``reach``.

    Returns:
        ``(distances, box)``: float32 distances on the box and the box's (row, column) slices; None for an
        empty mask.
    """
    box = bbox(mask)
    if box is None:
        return None
    m = int(np.ceil(reach)) + 1
    x0, y0 = max(0, int(box[0]) - m), max(0, int(box[1]) - m)
    x1, y1 = min(mask.shape[1], int(box[2]) + m), min(mask.shape[0], int(box[3]) + m)
    crop = (~mask[y0:y1, x0:x1]).astype(np.uint8)
    return np.asarray(cv2.distanceTransform(crop, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)), np.s_[y0:y1, x0:x1]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The (h, w) bool mask with its holes (background regions not connected to the border) filled."""
    n, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    if n <= 2:  # label 0 is the mask itself; one background component touches the border
        return mask
    hole = np.ones(n, dtype=bool)
    hole[0] = False
    hole[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = False
    return mask | hole[labels]


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter (He et al., ECCV 2010), box filters from OpenCV.

    Args:
        guide: (h, w) float32 grey image in [0, 1].
        src: (h, w) float32 soft mask to filter.
        radius: window radius in pixels.
        eps: regularisation (larger: smoother, fewer edges kept).

    Returns:
        (h, w) float32 filtered soft mask.
    """
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return np.asarray(cv2.boxFilter(x, -1, k, borderType=cv2.BORDER_REFLECT))

    mean_i = box(guide)
    mean_p = box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)
