"""Masks (and text) drawn onto video frames: each object tinted and outlined in its own colour,
labelled with its id, with an optional caption burned in at the bottom.

Two levels:

* :func:`draw_masks` draws on one frame (used by the web demo and anything frame-wise);
* :func:`render_overlay` streams a clip, draws every frame and writes an ``.mp4`` with OpenCV.

``masks_by_frame`` is anything that maps a frame index to ``{object id: (H, W) bool mask}``: a plain
dict, or a :class:`garvideo.trackers.TrackResult` (read frame by frame, never all at once).
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from garvideo.errors import InputError, PathLike

logger = logging.getLogger(__name__)

#: Overlay container → OpenCV fourcc.
VIDEO_CODECS = {".mp4": "mp4v", ".webm": "VP80", ".avi": "MJPG"}

# Distinct, colour-blind-friendly colours (RGB), one per object id (id 1 -> first); cycled beyond.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
)


def object_color(obj_id: int) -> tuple[int, int, int]:
    """The RGB colour of an object id (stable across frames, clips and tools)."""
    return PALETTE[(int(obj_id) - 1) % len(PALETTE)]


def _masks_on(masks_by_frame: Any, frame: int) -> Mapping[int, np.ndarray]:
    if hasattr(masks_by_frame, "masks") and hasattr(masks_by_frame, "frames"):  # TrackResult
        try:
            return masks_by_frame.masks(frame)
        except KeyError:  # a frame the result did not keep
            return {}
    return masks_by_frame.get(frame, {}) if isinstance(masks_by_frame, Mapping) else {}


def _frames_of(masks_by_frame: Any) -> list[int]:
    if hasattr(masks_by_frame, "frames"):
        return list(masks_by_frame.frames)
    return sorted(masks_by_frame)


def draw_masks(
    image: np.ndarray,
    masks: Mapping[int, np.ndarray],
    caption: str | None = None,
    *,
    alpha: float = 0.45,
    outline: int = 2,
    label: bool = True,
) -> np.ndarray:
    """Draw object masks on one frame.

    Args:
        image: (H, W, 3) uint8 RGB frame (not modified).
        masks: ``{object id: (H, W) bool mask}``; empty masks are skipped.
        caption: text burned in at the bottom (wrapped to the frame width), or ``None``.
        alpha: tint opacity in [0, 1].
        outline: contour thickness in pixels (0: no outline).
        label: write each object's id next to its mask.

    Returns:
        a new (H, W, 3) uint8 RGB frame.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    contours_by_obj = []
    for oid, m in masks.items():
        m = np.asarray(m, dtype=bool)
        if m.shape != (h, w):
            raise ValueError(f"mask of object {oid} is {m.shape}, frame is {(h, w)}")
        if not m.any():
            continue
        color = np.array(object_color(oid), dtype=np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * color
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        contours_by_obj.append((oid, m, contours))
    canvas = np.ascontiguousarray(out.round().clip(0, 255).astype(np.uint8))
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.4, min(h, w) / 600)
    thick = max(1, round(scale * 2))
    for oid, m, contours in contours_by_obj:
        color = object_color(oid)
        if outline > 0:
            cv2.drawContours(canvas, contours, -1, color, outline, lineType=cv2.LINE_AA)
        if label:
            ys, xs = np.nonzero(m)
            text = str(oid)
            (tw, th), base = cv2.getTextSize(text, font, scale, thick)
            x = int(np.clip(xs.min(), 0, max(0, w - tw - 4)))
            y = int(np.clip(ys.min() - 4, th + 4, h - 2))
            cv2.rectangle(canvas, (x, y - th - 4), (x + tw + 4, y + base - 2), color, -1)
            cv2.putText(canvas, text, (x + 2, y - 2), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    if caption:
        _draw_caption(canvas, caption, font, scale, thick)
    return canvas


def _draw_caption(canvas: np.ndarray, caption: str, font: int, scale: float, thick: int) -> None:
    h, w = canvas.shape[:2]
    sample = "the quick brown fox jumps over a lazy dog"
    (sw, ch), base = cv2.getTextSize(sample, font, scale, thick)
    per_line = max(8, int((w - 16) / max(sw / len(sample), 1)))
    while True:  # the estimate is for lower-case text: narrow it until every line fits the frame
        lines: list[str] = []
        for para in caption.splitlines() or [""]:
            lines += textwrap.wrap(para, per_line) or [""]
        widest = max(cv2.getTextSize(line, font, scale, thick)[0][0] for line in lines)
        if widest <= w - 16 or per_line <= 8:
            break
        per_line = max(8, int(per_line * (w - 16) / widest))
    max_lines = max(1, (h // 2) // (ch + base + 6))
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [lines[max_lines - 1][: per_line - 3] + "..."]
    line_h = ch + base + 6
    top = h - line_h * len(lines) - 8
    region = canvas[top:, :].astype(np.float32)
    canvas[top:, :] = (region * 0.35).astype(np.uint8)  # darken behind the text
    for i, line in enumerate(lines):
        y = top + 4 + ch + i * line_h
        cv2.putText(canvas, line, (8, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)


def render_overlay(
    video: Any,
    masks_by_frame: Mapping[int, Mapping[int, np.ndarray]] | Any,
    out_path: PathLike,
    caption: str | None = None,
    *,
    frames: Sequence[int] | None = None,
    fps: float | None = None,
    alpha: float = 0.45,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``video`` with the masks drawn on it; the codec follows the suffix (:data:`VIDEO_CODECS`).

    Args:
        video: a :class:`garvideo.video.Video` (frames are streamed, one at a time).
        masks_by_frame: ``{frame: {object id: (H, W) bool}}`` or a ``TrackResult``.
        out_path: the ``.mp4`` (MPEG-4 part 2, plays in desktop players), ``.webm`` (VP8, plays in
            browsers; OpenCV's wheels have no H.264 encoder) or ``.avi`` (MJPG) to write; parent folders
            are created.
        caption: text burned in at the bottom of every frame.
        frames: frame indices to render (default: the frames ``masks_by_frame`` has).
        fps: output frame rate (default: the video's, or 25 when unknown, divided by the frame
            step when rendering every k-th frame).
        alpha: tint opacity.
        progress: called as ``progress(done, total)``.

    Returns:
        the path written.

    Raises:
        InputError: nothing to render, an unsupported suffix, or OpenCV cannot write the file.
    """
    out = Path(out_path)
    idx = list(frames) if frames is not None else _frames_of(masks_by_frame)
    if not idx:
        raise InputError(out, "no frames to render")
    if fps is None:
        base = float(getattr(video, "fps", 0.0) or 25.0)
        step = (idx[-1] - idx[0]) / (len(idx) - 1) if len(idx) > 1 else 1.0
        fps = base / max(step, 1.0)
    codec = VIDEO_CODECS.get(out.suffix.lower())
    if codec is None:
        raise InputError(out, f"unsupported overlay format {out.suffix!r} (use {', '.join(VIDEO_CODECS)})")
    out.parent.mkdir(parents=True, exist_ok=True)
    w, h = int(video.width), int(video.height)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*codec), float(fps), (w, h))
    if not writer.isOpened():
        raise InputError(
            out, f"cannot write video (OpenCV has no {codec} encoder here, or the folder is not writable)"
        )
    try:
        for n, (fi, image) in enumerate(_stream(video, idx), start=1):
            drawn = draw_masks(image, _masks_on(masks_by_frame, fi), caption, alpha=alpha)
            writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            if progress is not None:
                progress(n, len(idx))
    finally:
        writer.release()
    logger.info("overlay: wrote %d frames to %s", len(idx), out)
    return out


def _stream(video: Any, idx: Sequence[int]) -> Iterable[tuple[int, np.ndarray]]:
    return video.frames(list(idx))
