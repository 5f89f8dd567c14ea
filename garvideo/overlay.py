"""Masks (and text) drawn onto video frames: each object tinted and outlined in its own colour and
labelled ``object0``, ``object1``, … (the names of questions and JSON), a frame counter and a keyframe
badge on the frame, and an optional caption in a band below the frame (never over the objects).

Two levels:

* :func:`draw_masks` draws on one frame (used by the web demo and anything frame-wise);
* :func:`render_overlay` streams a clip, draws every frame and writes a video: ``.mp4`` as H.264
  (``avc1``, yuv420p, through PyAV's own FFmpeg: plays in browsers, on GitHub and in every desktop
  player), ``.webm`` as VP8 and ``.avi`` as MJPG through OpenCV.

``masks_by_frame`` is anything that maps a frame index to ``{object id: (H, W) bool mask}``: a plain
dict, or a :class:`garvideo.trackers.TrackResult` (read frame by frame, never all at once). Object
id ``k + 1`` is ``object{k}``.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from garvideo.errors import InputError, PathLike

logger = logging.getLogger(__name__)

#: Overlay container → codec: H.264 through PyAV for .mp4, OpenCV fourccs for the others.
VIDEO_CODECS = {".mp4": "h264", ".webm": "VP80", ".avi": "MJPG"}

_FONT = cv2.FONT_HERSHEY_SIMPLEX

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


def object_name(obj_id: int) -> str:
    """The name of object id ``k + 1``: ``object{k}`` (as ``<object{k}>`` in questions)."""
    return f"object{int(obj_id) - 1}"


def object_color(obj_id: int) -> tuple[int, int, int]:
    """The RGB colour of an object id (stable across frames, clips and tools)."""
    return PALETTE[(int(obj_id) - 1) % len(PALETTE)]


@runtime_checkable
class FrameMasksSource(Protocol):
    """What a :class:`garvideo.trackers.TrackResult` offers an overlay: its kept frames and, per frame,
    ``{object id: (H, W) bool mask}`` (without importing the trackers)."""

    @property
    def frames(self) -> Sequence[int]: ...

    def masks(self, frame: int) -> Mapping[int, np.ndarray]: ...


MasksByFrame = FrameMasksSource | Mapping[int, Mapping[int, np.ndarray]]


def _masks_on(masks_by_frame: MasksByFrame, frame: int) -> Mapping[int, np.ndarray]:
    if isinstance(masks_by_frame, FrameMasksSource):  # a TrackResult
        try:
            return masks_by_frame.masks(frame)
        except KeyError:  # a frame the result did not keep
            return {}
    return masks_by_frame.get(frame, {})


def _frames_of(masks_by_frame: MasksByFrame) -> list[int]:
    if isinstance(masks_by_frame, FrameMasksSource):
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
        caption: text written in a dark band added below the frame (wrapped to the frame width), or
            ``None``; the result is then taller than ``image`` (see :func:`caption_band_height`).
        alpha: tint opacity in [0, 1].
        outline: contour thickness in pixels (0: no outline).
        label: write each object's name (``object0`` for id 1, …) above its mask's largest connected
            part (:func:`label_anchor`), so a stray fragment elsewhere does not carry the name.

    Returns:
        a new (H, W, 3) uint8 RGB frame, (H + band, W, 3) with a caption.
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
        rgb = np.array(object_color(oid), dtype=np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * rgb
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        contours_by_obj.append((oid, m, contours))
    canvas = np.ascontiguousarray(out.round().clip(0, 255).astype(np.uint8))
    font = _FONT
    scale, thick = _text_scale(h, w)
    for oid, m, contours in contours_by_obj:
        color = object_color(oid)
        if outline > 0:
            cv2.drawContours(canvas, contours, -1, color, outline, lineType=cv2.LINE_AA)
        if label:
            left, top = label_anchor(m)
            text = object_name(oid)
            (tw, th), base = cv2.getTextSize(text, font, scale, thick)
            x = int(np.clip(left, 0, max(0, w - tw - 4)))
            y = int(np.clip(top - 4, th + 4, h - 2))
            cv2.rectangle(canvas, (x, y - th - 4), (x + tw + 4, y + base - 2), color, -1)
            cv2.putText(canvas, text, (x + 2, y - 2), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    if caption:
        canvas = np.concatenate([canvas, caption_band(caption, w, scale=scale, thick=thick)], axis=0)
    return canvas


def label_anchor(mask: np.ndarray) -> tuple[int, int]:
    """``(left, top)`` of the bounding box of the largest 8-connected component of a non-empty bool
    ``(H, W)`` mask: where its label is drawn."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        raise ValueError("label_anchor needs a non-empty mask")
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # component 0 is the background
    return int(stats[best, cv2.CC_STAT_LEFT]), int(stats[best, cv2.CC_STAT_TOP])


def _text_scale(h: int, w: int) -> tuple[float, int]:
    scale = max(0.4, min(h, w) / 600)
    return scale, max(1, round(scale * 2))


def _caption_lines(caption: str, w: int, scale: float, thick: int, max_lines: int) -> list[str]:
    sample = "the quick brown fox jumps over a lazy dog"
    (sw, _), _ = cv2.getTextSize(sample, _FONT, scale, thick)
    per_line = max(8, int((w - 16) / max(sw / len(sample), 1)))
    while True:  # the estimate is for lower-case text: narrow it until every line fits the frame
        lines: list[str] = []
        for para in caption.splitlines() or [""]:
            lines += textwrap.wrap(para, per_line) or [""]
        widest = max(cv2.getTextSize(line, _FONT, scale, thick)[0][0] for line in lines)
        if widest <= w - 16 or per_line <= 8:
            break
        per_line = max(8, int(per_line * (w - 16) / widest))
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [lines[max_lines - 1][: per_line - 3] + "..."]
    return lines


def caption_band(
    caption: str,
    width: int,
    *,
    height: int | None = None,
    scale: float | None = None,
    thick: int | None = None,
) -> np.ndarray:
    """The caption as white text on a dark band ``(band, width, 3)`` uint8, to go below a frame.

    Args:
        caption: the text (wrapped to ``width``; at most 8 lines, the last one cut with ``...``).
        width: the frame width.
        height: the frame height (sets the text size, as on the frame); default: ``width * 3 / 4``.
        scale, thick: OpenCV text scale and thickness (default: from the frame size).
    """
    if scale is None or thick is None:
        scale, thick = _text_scale(height or max(1, width * 3 // 4), width)
    (_, ch), base = cv2.getTextSize("Ag", _FONT, scale, thick)
    line_h = ch + base + 6
    lines = _caption_lines(caption, width, scale, thick, max_lines=8)
    band = np.full((line_h * len(lines) + 10, width, 3), 24, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(band, line, (8, 6 + ch + i * line_h), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return band


def draw_frame_info(canvas: np.ndarray, frame: int, num_frames: int | None, keyframe: bool) -> None:
    """Write the frame counter (``frame 12/48``, top left) and, on a keyframe, a ``KEYFRAME`` badge
    (top right) on ``canvas`` (RGB, modified in place). Frames are numbered from 0, as ``--frame``."""
    h, w = canvas.shape[:2]
    scale, thick = _text_scale(h, w)
    scale *= 0.8
    thick = max(1, thick - 1)
    text = f"frame {frame}" + (f"/{num_frames - 1}" if num_frames else "")
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    cv2.rectangle(canvas, (0, 0), (tw + 8, th + base + 6), (0, 0, 0), -1)
    cv2.putText(canvas, text, (4, th + 3), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    if keyframe:
        badge = "KEYFRAME"
        (bw, bh), bb = cv2.getTextSize(badge, _FONT, scale, thick)
        x0 = max(0, w - bw - 8)
        cv2.rectangle(canvas, (x0, 0), (w, bh + bb + 6), (255, 200, 0), -1)
        cv2.putText(canvas, badge, (x0 + 4, bh + 3), _FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)


def render_overlay(
    video: Any,
    masks_by_frame: MasksByFrame,
    out_path: PathLike,
    caption: str | None = None,
    *,
    frames: Sequence[int] | None = None,
    keyframes: Sequence[int] | None = None,
    frame_info: bool = True,
    fps: float | None = None,
    alpha: float = 0.45,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``video`` with the masks drawn on it; the codec follows the suffix (:data:`VIDEO_CODECS`).

    Args:
        video: a :class:`garvideo.video.Video` (frames are streamed, one at a time).
        masks_by_frame: ``{frame: {object id: (H, W) bool}}`` or a ``TrackResult``.
        out_path: the ``.mp4`` (H.264 ``avc1``, yuv420p, written with PyAV: plays in browsers and
            desktop players), ``.webm`` (VP8, OpenCV) or ``.avi`` (MJPG, OpenCV) to write; parent
            folders are created.
        caption: text in a band below every frame (the video is then taller than the clip).
        frames: frame indices to render (default: the frames ``masks_by_frame`` has).
        keyframes: frames that get a ``KEYFRAME`` badge (e.g. the frames GAR saw).
        frame_info: draw the frame counter (and the keyframe badges).
        fps: output frame rate (default: the video's, or 25 when unknown, divided by the frame
            step when rendering every k-th frame).
        alpha: tint opacity.
        progress: called as ``progress(done, total)``.

    Returns:
        the path written.

    Raises:
        InputError: nothing to render, an unsupported suffix, or the file cannot be written.
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
    band = caption_band(caption, w, height=h) if caption else None
    size = (w, h + (0 if band is None else band.shape[0]))
    key = {int(k) for k in keyframes or ()}
    n_total = int(getattr(video, "num_frames", 0) or 0) or None
    writer = _H264Writer(out, size, fps) if codec == "h264" else _OpenCVWriter(out, size, fps, codec)
    try:
        for n, (fi, image) in enumerate(_stream(video, idx), start=1):
            drawn = draw_masks(image, _masks_on(masks_by_frame, fi), alpha=alpha)
            if frame_info:
                draw_frame_info(drawn, fi, n_total, fi in key)
            if band is not None:
                drawn = np.concatenate([drawn, band], axis=0)
            writer.write(drawn)
            if progress is not None:
                progress(n, len(idx))
    finally:
        writer.close()
    logger.info("overlay: wrote %d frames to %s", len(idx), out)
    return out


def _stream(video: Any, idx: Sequence[int]) -> Iterable[tuple[int, np.ndarray]]:
    return video.frames(list(idx))


class _OpenCVWriter:
    """``.webm`` (VP8) / ``.avi`` (MJPG) through OpenCV."""

    def __init__(self, out: Path, size: tuple[int, int], fps: float, fourcc: str) -> None:
        self.w = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*fourcc), float(fps), size)
        if not self.w.isOpened():
            raise InputError(
                out,
                f"cannot write video (OpenCV has no {fourcc} encoder here, or the folder is not writable)",
            )

    def write(self, rgb: np.ndarray) -> None:
        self.w.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.w.release()


class _H264Writer:
    """``.mp4`` as H.264 (``avc1``) through PyAV, whose wheels ship their own FFmpeg with libx264:
    OpenCV's wheels have no H.264 encoder, and their ``mp4v`` (MPEG-4 part 2) does not play in
    browsers. yuv420p needs even sizes: odd ones are padded by one black row / column."""

    def __init__(self, out: Path, size: tuple[int, int], fps: float) -> None:
        try:
            import av
        except ImportError:
            raise InputError(
                out, "writing .mp4 needs PyAV (pip install av); or use a .webm overlay"
            ) from None
        self.w, self.h = size
        self.ew, self.eh = self.w + self.w % 2, self.h + self.h % 2
        try:
            self.container = av.open(str(out), mode="w", options={"movflags": "+faststart"})
        except Exception as exc:  # noqa: BLE001 - unwritable folder, ...
            raise InputError(out, f"cannot write video ({exc})") from None
        self.stream = self.container.add_stream("libx264", rate=Fraction(float(fps)).limit_denominator(1001))
        self.stream.width, self.stream.height = self.ew, self.eh
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": "20", "preset": "veryfast"}
        self._av = av

    def write(self, rgb: np.ndarray) -> None:
        if (self.ew, self.eh) != (self.w, self.h):
            rgb = np.pad(rgb, ((0, self.eh - self.h), (0, self.ew - self.w), (0, 0)))
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()
