"""garvideo: region-level video understanding with GAR (Grasp Any Region).

A mask (or points, or a box) of objects on any frame of a clip is propagated through the clip
(:mod:`garvideo.trackers`), keyframes go to the image-trained GAR model with per-frame RoI-aligned
feature replay (:mod:`garvideo.model`), and the user gets a description or an answer
(:class:`garvideo.pipeline.GarVideo`). :mod:`garvideo.eval` scores VideoRefer-Bench-Q.

The package root is lazy (:mod:`garvideo._lazy`): ``from garvideo import GarVideo`` imports the pipeline (and
torch) on first use, so ``import garvideo`` and light submodules stay light.
"""

from typing import TYPE_CHECKING

# OpenCV must be loaded before decord: decord's wheel bundles an old zlib (1.2.3) whose symbols,
# once loaded first, break OpenCV's PNG decoder ("libpng error: bad parameters to zlib"). Kept at the root
# so that it holds in any process that imports garvideo, whatever it imports next.
import cv2 as _cv2  # noqa: F401  (import order matters, see above)

from garvideo._lazy import lazy_exports
from garvideo._version import __version__

if TYPE_CHECKING:
    from garvideo.pipeline import AnswerResult, DescribeResult, GarVideo

_EXPORTS = {"AnswerResult": "pipeline", "DescribeResult": "pipeline", "GarVideo": "pipeline"}

__all__ = ["AnswerResult", "DescribeResult", "GarVideo", "__version__"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
