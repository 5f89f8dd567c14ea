"""How a request's objects reach :meth:`garvideo.pipeline.GarVideo.prepare`: masks as ``masks=``;
points and boxes (SAM 2 prompts) through ``prepare``'s prompt argument when this garvideo has one.

This is the one place that knows how ``prepare`` takes point/box prompts: when the pipeline gains
them, only :func:`prepare_kwargs` changes.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from garvideo.serve.media import ObjectSpec
from garvideo.serve.schema import ApiError

__all__ = ["NEEDS_SAM2", "prepare_kwargs"]

NEEDS_SAM2 = "points/box prompts need a SAM 2 checkpoint"


def _takes_prompts(gv: Any) -> bool:
    try:
        return "prompts" in inspect.signature(gv.prepare).parameters
    except (TypeError, ValueError):
        return False


def prepare_kwargs(gv: Any, objects: Sequence[ObjectSpec], frame: int) -> dict[str, Any]:
    """``prepare`` keyword arguments for the objects on ``frame``.

    Raises:
        ApiError: 400 for points/box objects when the server cannot turn them into masks (no SAM 2
            tracker, or a pipeline without point/box prompts).
    """
    if all(o.mask is not None for o in objects):
        return {"masks": [o.mask for o in objects], "frame": frame}
    if not _takes_prompts(gv):
        raise ApiError(
            400,
            f"{NEEDS_SAM2} and a garvideo whose pipeline takes them; send the objects as rle or png masks",
            "masks",
            "sam2_required",
        )
    if gv.tracker_name != "sam2":
        raise ApiError(
            400,
            f"{NEEDS_SAM2} (start the server with --tracker sam2 --sam2-checkpoint PATH); this server tracks "
            f"with {gv.tracker_name}: send the objects as rle or png masks",
            "masks",
            "sam2_required",
        )
    from garvideo.trackers import Prompt

    prompts = [
        Prompt(obj_id=i + 1, frame=frame, mask=o.mask, points=o.points, labels=o.labels, box=o.box)
        for i, o in enumerate(objects)
    ]
    return {"prompts": prompts, "frame": frame}
