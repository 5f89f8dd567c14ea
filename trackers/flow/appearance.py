"""Appearance models of the flow tracker (step 3 of :mod:`garvideo.trackers.flow`).

* Colour histograms in quantised CIE Lab (:data:`BINS` bins a channel) of an object and of its background
  (half a ring around the object, half the whole frame outside it): :func:`colour_models`, turned into a
  per-colour log-odds table by :func:`colour_lut`.
* A bilateral colour-and-position likelihood (after Märki et al., CVPR 2016): :func:`bilateral_logodds`.

Arrays are at the tracker's working resolution: (h, w) bin indices from :func:`quantise_lab`.
"""

from __future__ import annotations

import cv2
import numpy as np

from garvideo.trackers.flow.geometry import bbox, distance_crop

BINS = 16  # Lab histogram bins per channel (16^3 = 4096 colours)
EPS = 1e-4  # histogram floor in the log-odds


def quantise_lab(rgb_small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour indices of an (h, w, 3) uint8 RGB frame.

    Returns:
        ``(bins, col8)``: (h, w) int32 histogram bin index in quantised Lab (16 bins a channel) and
        (h, w) int32 bilateral-grid colour index (8 bins a channel).
    """
    lab = np.asarray(cv2.cvtColor(rgb_small, cv2.COLOR_RGB2LAB), dtype=np.uint8)  # (h, w, 3)
    l, a, b = (np.asarray(c, dtype=np.uint8) for c in cv2.split(lab >> 4))  # 256 / 16 = 16 bins per channel
    bins = (l.astype(np.uint16) << 8 | a.astype(np.uint16) << 4 | b).astype(np.int32)  # (l*16+a)*16+b
    l8, a8, b8 = l >> 1, a >> 1, b >> 1  # 8 bins per channel
    return bins, (l8.astype(np.uint16) << 6 | a8.astype(np.uint16) << 3 | b8).astype(np.int32)


def count(bins: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(4096,) int64 pixel count of each colour bin (over the bool mask, if given)."""
    return np.bincount((bins if mask is None else bins[mask]).ravel(), minlength=BINS**3)


def hist(counts: np.ndarray) -> np.ndarray:
    """Pixel counts -> (4096,) float32 normalised histogram."""
    h = counts.astype(np.float32)
    s = h.sum()
    return h / s if s > 0 else h


def colour_models(
    bins: np.ndarray, prob: np.ndarray, band: float, global_bg: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Object and background colour histograms of the soft mask ``prob`` (h, w) on a frame's ``bins``.

    Counted on the mask's neighbourhood only: the ring is (distance <= 2 size) minus (distance <= inner),
    with size ``band`` x sqrt(mask area); with ``global_bg`` half of the background is the whole frame
    minus (distance <= inner).

    Returns:
        ``(fg, bg)``: (4096,) float32 normalised histograms.
    """
    fg = prob > 0.5
    size = max(2, int(np.sqrt(max(int(np.count_nonzero(fg)), 1)) * band))
    crop = distance_crop(fg, 2 * size)
    inner = max(1, size // 3)
    zero = np.zeros(BINS**3, np.int64)
    if crop is None:
        n_fg = n_near = n_inner = zero
    else:
        dist, sl = crop
        b = bins[sl]
        n_fg, n_near, n_inner = count(b, fg[sl]), count(b, dist <= 2 * size), count(b, dist <= inner)
    h_fg, h_bg = hist(n_fg), hist(n_near - n_inner)
    if global_bg:
        # Everything outside the object's neighbourhood: a look-alike anywhere in the frame (a
        # second animal, a crowd, a fence) makes its colours background, not only a ring.
        h_bg = 0.5 * h_bg + 0.5 * hist(count(bins) - n_inner)
    return h_fg, h_bg


def colour_lut(
    anchor: tuple[np.ndarray, np.ndarray], running: tuple[np.ndarray, np.ndarray], anchor_weight: float
) -> np.ndarray:
    """(4096,) float32 log-odds of each colour bin being the object: the prompt frame's histograms
    (``anchor``: fg, bg) mixed with the running ones (``running``: fg, bg), ``anchor_weight`` of the former."""
    fg = anchor_weight * anchor[0] + (1 - anchor_weight) * running[0]
    bg = anchor_weight * anchor[1] + (1 - anchor_weight) * running[1]
    return np.log((fg + EPS) / (bg + EPS)).astype(np.float32)


def bilateral_logodds(
    prev_prob: np.ndarray,
    area_ref: float,
    warped: np.ndarray,
    col8: np.ndarray,
    prev_col8: np.ndarray,
    flow_f: np.ndarray | None,
    grid: tuple[np.ndarray, np.ndarray],
    cell: float,
    band: float,
) -> np.ndarray:
    """(h, w) float32 log-odds that a pixel is the object given its colour AND position.

    The previous frame's soft mask is splatted into a bilateral grid (x, y, Lab; Märki et al.,
    CVPR 2016) at the positions the forward flow moves each pixel to, the grid is blurred over
    neighbouring cells, and each current pixel reads back the object share of previous pixels of
    its colour near it. Unlike a colour histogram, a look-alike next to the object (a second
    animal, a fence) is background because its own pixels were background a frame ago.

    Args:
        prev_prob: (h, w) float32 soft mask of the object on the previous frame.
        area_ref: the object's typical area (pixels).
        warped: (h, w) float32 previous mask warped onto the current frame.
        col8, prev_col8: (h, w) int32 colour indices (8 bins a channel) of the current / previous frame.
        flow_f: (h, w, 2) float32 forward flow (previous -> current), or None (pixels stay put).
        grid: (h, w) float32 pixel x and y coordinates.
        cell: grid cell width, as a fraction of sqrt(object area) (at least 3 pixels).
        band: search band, as a fraction of sqrt(object area): the box read is widened by it.

    Returns:
        the log-odds, clipped to [-4, 4], 0 outside the objects' widened box.
    """
    grid_x, grid_y = grid
    h, w = warped.shape
    c = max(3.0, cell * float(np.sqrt(max(area_ref, 1.0))))
    core = warped > 0.5
    box = bbox(core | (prev_prob > 0.5))
    out = np.zeros((h, w), np.float32)
    if box is None:
        return out
    pad = 2 * c + band * np.sqrt(max(area_ref, 1.0))
    x0, y0 = int(max(0, box[0] - pad)), int(max(0, box[1] - pad))
    x1, y1 = int(min(w, box[2] + pad)), int(min(h, box[3] + pad))
    gw, gh = int((x1 - x0) / c) + 2, int((y1 - y0) / c) + 2

    px = grid_x[y0:y1, x0:x1]
    py = grid_y[y0:y1, x0:x1]
    if flow_f is not None:
        px = px + flow_f[y0:y1, x0:x1, 0]
        py = py + flow_f[y0:y1, x0:x1, 1]
    cx = np.clip(np.rint((px - x0) / c), 0, gw - 1).astype(np.int64)
    cy = np.clip(np.rint((py - y0) / c), 0, gh - 1).astype(np.int64)
    idx = (cy * gw + cx) * 512 + prev_col8[y0:y1, x0:x1]
    n = gh * gw * 512
    fg = np.bincount(idx.ravel(), weights=prev_prob[y0:y1, x0:x1].ravel(), minlength=n)
    tot = np.bincount(idx.ravel(), minlength=n)  # int64: exact counts, blurred exactly

    def blur(g: np.ndarray) -> np.ndarray:  # [1, 2, 1] over both spatial axes, zero outside
        g = g.reshape(gh, gw, 512)
        r = 2 * g
        r[1:] += g[:-1]
        r[:-1] += g[1:]
        out = 2 * r
        out[:, 1:] += r[:, :-1]
        out[:, :-1] += r[:, 1:]
        return out

    fg, tot = blur(fg), blur(tot)
    # Grid cell of each current pixel: one per column and one per row.
    qx = np.clip(np.rint((grid_x[0, x0:x1] - x0) / c), 0, gw - 1).astype(np.int64)
    qy = np.clip(np.rint((grid_y[y0:y1, 0] - y0) / c), 0, gh - 1).astype(np.int64)
    q = (qy[:, None] * gw + qx[None, :]) * 512 + col8[y0:y1, x0:x1]
    f = fg.ravel()[q]
    t = tot.ravel()[q]
    # A pseudo-count of one pixel each way: unseen colours are neutral (log-odds 0).
    out[y0:y1, x0:x1] = np.clip(np.log((f + 1.0) / (t - f + 1.0)).astype(np.float32), -4, 4)
    return out  # 0 outside the box
