"""garvideo: region-level video understanding with GAR (Grasp Any Region).

A mask (or points, or a box) of objects on any frame of a clip is propagated through the clip
(:mod:`garvideo.trackers`), keyframes go to the image-trained GAR model with per-frame RoI-aligned
feature replay (:mod:`garvideo.model`), and the user gets a description or an answer
(:class:`garvideo.pipeline.GarVideo`). :mod:`garvideo.eval` scores VideoRefer-Bench-Q.
"""

from typing import TYPE_CHECKING, Any

# OpenCV must be loaded before decord: decord's wheel bundles an old zlib (1.2.3) whose symbols,
# once loaded first, break OpenCV's PNG decoder ("libpng error: bad parameters to zlib").
import cv2 as _cv2  # noqa: F401  (import order matters, see above)

__version__ = "0.1.0"

__all__ = ["AnswerResult", "DescribeResult", "GarVideo", "__version__"]

if TYPE_CHECKING:
    from garvideo.pipeline import AnswerResult, DescribeResult, GarVideo


def __getattr__(name: str) -> Any:
    """``from garvideo import GarVideo`` without importing torch and transformers at ``import garvideo``."""
    if name in ("GarVideo", "DescribeResult", "AnswerResult"):
        from garvideo import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'garvideo' has no attribute {name!r}")
