"""Motion against the background (step 3c of :mod:`garvideo.trackers.flow`): an affine model of the
background's (camera) motion fitted robustly to the flow (:func:`robust_affine`), and the log-odds that a pixel
is the object from how far its flow departs from that model (:func:`motion_logodds`, :func:`background_motion`).
"""

from __future__ import annotations

import numpy as np


def robust_affine(x: np.ndarray, y: np.ndarray, uv: np.ndarray, rounds: int = 10) -> tuple[np.ndarray, float]:
    """Affine motion model fitted robustly to flow samples.

    Args:
        x, y: (n,) float32 pixel coordinates of the samples.
        uv: (n, 2) float32 flow at the samples.
        rounds: iteratively reweighted least-squares rounds (Cauchy weights; with 30 % outliers
            moving 8 px otherwise, 5 rounds leave a 0.3 px bias and 10 converge).

    Returns:
        ``(A, scale)``: A (3, 2) with ``[1, x, y] @ A`` the model's flow, and the robust scale (pixels,
        at least 0.3) of the residuals, 1.4826 x their median (the standard deviation for Gaussian
        noise; outliers such as another moving object do not inflate it).
    """
    X = np.stack([np.ones_like(x), x, y], 1).astype(np.float64)  # (n, 3)
    uv = uv.astype(np.float64)
    A = np.zeros((3, 2))
    A[0] = np.median(uv, axis=0)  # start from the median translation: robust to up to half outliers
    for _ in range(rounds):
        r = np.linalg.norm(uv - X @ A, axis=1)
        scale = max(0.3, 1.4826 * float(np.median(r)))
        w = 1.0 / (1.0 + (r / (2.0 * scale)) ** 2)
        Xw = X * w[:, None]
        # Weighted least squares by the normal equations (3 x 3): the samples are few and well spread.
        A_new = np.linalg.solve(Xw.T @ X + 1e-9 * np.eye(3), Xw.T @ uv)
        done = np.abs(A_new - A).max() < 1e-4
        A = A_new
        if done:
            break
    r = np.linalg.norm(uv - X @ A, axis=1)
    return A, max(0.3, 1.4826 * float(np.median(r)))


def motion_logodds(r: np.ndarray, scale: float, m_obj: float, positive: float) -> np.ndarray:
    """Log-odds that a pixel is the object, from how far its flow departs from the background's.

    Args:
        r: residuals (pixels): distance of each pixel's flow from the background model's.
        scale: the background residuals' robust scale (noise).
        m_obj: the object's median residual (its own motion); at least ``2 * scale + 0.5``.
        positive: the most a pixel moving like the object adds.

    Returns:
        float32, same shape as ``r``: -2 at r = 0, rising linearly to 0 at the midpoint
        ``tau = (m_obj + scale) / 2``, then ``positive`` at r = m_obj, falling back to 0 at
        r = 2 m_obj (much faster than the object: spray, another object, a flow error).
    """
    tau = 0.5 * (m_obj + scale)
    neg = np.clip(2.0 * (r / tau - 1.0), -2.0, 0.0)
    rise = np.clip((r - tau) / max(m_obj - tau, 1e-3), 0.0, 1.0)
    fall = np.clip(2.0 - r / m_obj, 0.0, 1.0)
    return (neg + positive * np.minimum(rise, fall)).astype(np.float32)


def affine_flow(A: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The flow (..., 2) of the affine model ``A`` (3, 2) at pixel coordinates x, y (same shape)."""
    return np.stack([A[0, 0] + A[1, 0] * x + A[2, 0] * y, A[0, 1] + A[1, 1] * x + A[2, 1] * y], -1)


def background_motion(
    flow_b: np.ndarray,
    flow_box: tuple[int, int, int, int] | None,
    grid: tuple[np.ndarray, np.ndarray],
    core: np.ndarray,
    near: np.ndarray,
    sl: tuple[slice, slice],
    positive: float,
) -> np.ndarray | None:
    """Motion log-odds (:func:`motion_logodds`) on the band box ``sl``, or None when motion says nothing.

    The background model is fitted to the flow crop outside the search band ``near`` (every 4th
    pixel each way: an affine fit needs few samples); the object's own motion is the median residual
    over the warped core. None when the crop is too small, or when the object does not move
    distinctly from the background (median residual below twice the noise + 0.5 px: a static
    object under a static camera, an object the camera follows exactly over a textureless
    background), where the residuals carry no information.

    Args:
        flow_b: (h, w, 2) float32 backward flow (current -> previous frame).
        flow_box: (x0, y0, x1, y1) where ``flow_b`` was computed (None: nowhere).
        grid: (h, w) float32 pixel x and y coordinates.
        core, near: (h, w) bool warped mask and search band.
        sl: the band box's (row, column) slices.
        positive: the most a pixel moving like the object adds (log-odds).

    Returns:
        float32 log-odds on the band box, or None.
    """
    if flow_box is None:
        return None
    grid_x, grid_y = grid
    x0, y0, x1, y1 = flow_box
    sub = np.s_[y0:y1:4, x0:x1:4]
    gx, gy, fb = grid_x[sub], grid_y[sub], flow_b[sub]
    bg, obj = ~near[sub], core[sub]
    if np.count_nonzero(bg) < 50 or np.count_nonzero(obj) < 10:
        return None
    A, scale = robust_affine(gx[bg], gy[bg], fb[bg])
    m_obj = float(np.median(np.linalg.norm(fb[obj] - affine_flow(A, gx[obj], gy[obj]), axis=-1)))
    if m_obj < 2.0 * scale + 0.5:
        return None
    r = np.linalg.norm(flow_b[sl] - affine_flow(A, grid_x[sl], grid_y[sl]), axis=-1)
    return motion_logodds(r, scale, m_obj, positive)
