"""A short synthetic clip with known masks, so the demos and tests need nothing external.

Two textured objects move over a textured, slowly panning background:

* object 1, an orange-and-red checkered disc, runs left to right and passes **behind a grey post**
  (partial occlusion: its ground-truth mask is only its visible part);
* object 2, a blue striped square, moves up and right and **leaves the frame** near the end (its
  mask is empty on the last frames).

``python -m garvideo.demos.sample_clip OUT_DIR`` writes::

    OUT_DIR/clip.mp4              the clip (MPEG-4, decodable by decord and OpenCV)
    OUT_DIR/frames/00000.png …    the same frames, lossless
    OUT_DIR/masks/00000.png …     ground truth: mode-L id maps (0 background, 1 disc, 2 square)
    OUT_DIR/mask_00000.png        frame 0's id map: both objects, the usual prompt
    OUT_DIR/object1_00000.png     frame 0, one object per file (0/255)
    OUT_DIR/object2_00000.png
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from garvideo.errors import PathLike
from garvideo.masks import save_id_map, save_mask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleClip:
    """Paths and facts of a generated sample clip (see the module docstring for the layout)."""

    root: Path
    video_path: Path
    frames_dir: Path
    masks_dir: Path
    prompt_mask: Path
    object_masks: tuple[Path, ...]
    num_frames: int
    fps: float
    height: int
    width: int
    num_objects: int = 2

    def gt(self, frame: int) -> list[np.ndarray]:
        """Ground-truth bool masks ``(H, W)`` of every object on ``frame`` (empty where absent)."""
        from PIL import Image

        ids = np.asarray(Image.open(self.masks_dir / f"{frame:05d}.png"))
        return [ids == k for k in range(1, self.num_objects + 1)]

    def gt_all(self) -> np.ndarray:
        """All ground truth: bool array ``(T, N, H, W)``."""
        return np.stack([np.stack(self.gt(t)) for t in range(self.num_frames)])


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    import cv2

    small = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(small, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured background, wider than the frame so the camera can pan: ``(h, w, 3)`` float."""
    low = _smooth_noise(rng, h, w, 40)[:h, :w]
    mid = _smooth_noise(rng, h, w, 8)[:h, :w]
    fine = rng.random((h, w)).astype(np.float32)
    base = np.array([70.0, 110.0, 60.0])  # greenish field
    tex = 0.55 * low + 0.3 * mid + 0.15 * fine
    img = base[None, None, :] * (0.6 + 0.8 * tex[:, :, None])
    return np.clip(img, 0, 255)


def make_sample_clip(
    out_dir: PathLike,
    *,
    num_frames: int = 48,
    width: int = 320,
    height: int = 240,
    fps: float = 12.0,
    seed: int = 0,
    write_video: bool = True,
) -> SampleClip:
    """Generate the sample clip under ``out_dir`` (see the module docstring) and return its facts.

    Args:
        out_dir: folder to write into (created; existing files are overwritten).
        num_frames: clip length (at least 8).
        width, height: frame size in pixels (at least 96x72).
        fps: frame rate written into the mp4.
        seed: texture seed; the same arguments always give the same clip.
        write_video: also write ``clip.mp4`` (the frame folder is always written).
    """
    import cv2

    if num_frames < 8:
        raise ValueError("num_frames must be at least 8")
    if width < 96 or height < 72:
        raise ValueError("the clip must be at least 96x72")
    root = Path(out_dir)
    frames_dir, masks_dir = root / "frames", root / "masks"
    frames_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pan = max(1, num_frames // 2)  # background pans by 1 px every other frame
    bg = _background(rng, height, width + pan + 1)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    # The occluding post: a vertical grey bar, in front of object 1.
    post_x0 = int(width * 0.47)
    post_x1 = post_x0 + max(8, width // 13)
    post = (xx >= post_x0) & (xx < post_x1)
    post_tex = 120 + 40 * _smooth_noise(rng, height, width, 6)[:height, :width]

    r1 = height * 0.12  # disc radius
    s2 = height * 0.2  # square side
    writer = None
    if write_video:
        writer = cv2.VideoWriter(
            os.fspath(root / "clip.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height)
        )
        if not writer.isOpened():
            raise RuntimeError("OpenCV could not open an mp4 writer (mp4v)")
    for t in range(num_frames):
        u = t / (num_frames - 1)
        off = t // 2
        frame = bg[:, off : off + width].copy()

        # object 2: blue striped square, up and to the right, leaves through the right edge
        cx2 = width * (0.62 + 0.55 * u)
        cy2 = height * (0.62 - 0.3 * u)
        sq = (np.abs(xx - cx2) < s2 / 2) & (np.abs(yy - cy2) < s2 / 2)
        stripes = ((xx - cx2 + yy) // 5) % 2
        frame[sq] = np.stack([30 + 40 * stripes, 60 + 50 * stripes, 200 + 40 * stripes], -1)[sq]

        # object 1: checkered disc, left to right on a gentle arc, behind the post mid-clip
        cx1 = width * (0.12 + 0.7 * u)
        cy1 = height * (0.45 + 0.1 * np.sin(np.pi * u))
        disc = (xx - cx1) ** 2 + (yy - cy1) ** 2 < r1**2
        checker = (((xx - cx1) // 6 + (yy - cy1) // 6) % 2).astype(np.float32)
        frame[disc] = np.stack([235 - 30 * checker, 140 - 90 * checker, 40 + 0 * checker], -1)[disc]
        sq = sq & ~disc  # the disc is in front of the square where they meet

        # the post, in front of both
        frame[post] = np.repeat(post_tex[:, :, None], 3, axis=2)[post]
        m1 = disc & ~post
        m2 = sq & ~post

        img = np.clip(frame, 0, 255).astype(np.uint8)
        cv2.imwrite(os.fspath(frames_dir / f"{t:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        save_id_map(masks_dir / f"{t:05d}.png", [m1, m2])
        if writer is not None:
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if t == 0:
            save_id_map(root / "mask_00000.png", [m1, m2])
            save_mask(root / "object1_00000.png", m1)
            save_mask(root / "object2_00000.png", m2)
    if writer is not None:
        writer.release()
    logger.info("sample clip written to %s (%d frames, %dx%d)", root, num_frames, width, height)
    return SampleClip(
        root=root,
        video_path=root / "clip.mp4",
        frames_dir=frames_dir,
        masks_dir=masks_dir,
        prompt_mask=root / "mask_00000.png",
        object_masks=(root / "object1_00000.png", root / "object2_00000.png"),
        num_frames=num_frames,
        fps=float(fps),
        height=height,
        width=width,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m garvideo.demos.sample_clip",
        description="Write garvideo's synthetic sample clip with ground-truth masks.",
        epilog="Example: python -m garvideo.demos.sample_clip out/sample",
    )
    parser.add_argument("out_dir")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    clip = make_sample_clip(
        args.out_dir,
        num_frames=args.frames,
        width=args.width,
        height=args.height,
        fps=args.fps,
        seed=args.seed,
    )
    print(
        f"wrote {clip.video_path} ({clip.num_frames} frames, {clip.width}x{clip.height}); prompt mask {clip.prompt_mask}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
