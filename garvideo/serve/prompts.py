"""How a request's objects reach :meth:`garvideo.pipeline.GarVideo.prepare`: masks as they are;
points and boxes (SAM 2 prompts) first turned into masks on the prompt frame by the tracker, with
``garvideo.trackers.masks_from_prompts`` when this garvideo has it.

This is the one place of the server that knows how point/box prompts are handled: wiring them
differently changes only this module.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from garvideo.errors import InputError, ModelUnavailableError
from garvideo.serve.media import ObjectSpec
from garvideo.serve.schema import ApiError
from garvideo.trackers import Prompt, masks_from_prompts
from garvideo.trackers.text import NoTextMatchError, TextDetection, TextDetector, text_prompts
from garvideo.video import open_video

if TYPE_CHECKING:
    from garvideo.pipeline import GarVideo

__all__ = ["NEEDS_SAM2", "TextObjects", "check_prompts", "prepare_kwargs"]

NEEDS_SAM2 = "points/box prompts need a SAM 2 checkpoint"


def check_prompts(gv: GarVideo, objects: Sequence[ObjectSpec]) -> None:
    """Refuse points/box objects the server cannot segment (before the request is queued).

    Raises:
        ApiError: 400 when some object is points or a box and the server's tracker is not SAM 2, or this
            garvideo cannot turn points/boxes into masks.
    """
    if all(o.mask is not None for o in objects):
        return
    if gv.tracker_name != "sam2":
        raise ApiError(
            400,
            f"{NEEDS_SAM2} (start the server with --tracker sam2 --sam2-checkpoint PATH); this server tracks "
            f"with {gv.tracker_name}: send the objects as rle or png masks",
            "masks",
            "sam2_required",
        )


def prepare_kwargs(gv: GarVideo, objects: Sequence[ObjectSpec], frame: int, video: Path) -> dict[str, Any]:
    """``prepare`` keyword arguments for the objects on ``frame`` of ``video`` (run in the model thread:
    points and boxes are segmented by SAM 2 on the prompt frame here)."""
    if all(o.mask is not None for o in objects):
        return {"masks": [o.mask for o in objects], "frame": frame}
    check_prompts(gv, objects)
    prompts = [
        Prompt(obj_id=i + 1, frame=frame, mask=o.mask, points=o.points, labels=o.labels, box=o.box)
        for i, o in enumerate(objects)
    ]
    try:
        with open_video(video) as vid:
            masks = masks_from_prompts(gv.tracker, vid, prompts)
    except InputError as exc:  # e.g. SAM 2 found nothing at a point
        raise ApiError(400, exc.problem, "masks", "bad_prompt") from None
    return {"masks": masks, "frame": frame}


class TextObjects:
    """The server's text prompts: SAM 3's concept detector (:class:`garvideo.trackers.text.TextDetector`,
    built on the first text request from ``checkpoint`` / ``threshold``, or the one given), run on the
    request's prompt frame by :func:`garvideo.trackers.text.text_prompts`; one request at a time."""

    def __init__(
        self,
        checkpoint: str | None = None,
        threshold: float = 0.5,
        device: str | None = None,
        detector: TextDetector | None = None,
    ) -> None:
        self.checkpoint, self.threshold, self.device = checkpoint, float(threshold), device
        self._detector = detector
        self._lock = threading.Lock()

    def resolve(
        self, objects: Sequence[ObjectSpec], frame: int, video: Path
    ) -> tuple[list[ObjectSpec], list[TextDetection]]:
        """``objects`` with each text one replaced by the mask of its chosen candidate, and the
        :class:`~garvideo.trackers.text.TextDetection` of each text (in order; none without text).

        Raises:
            ApiError: 400 ``no_text_match`` (no candidate above the threshold; the message lists the best
                scores), ``bad_prompt`` (a pick beyond the candidates); 503 ``text_unavailable`` when no
                SAM 3 can be loaded.
        """
        texts = [o for o in objects if o.kind == "text"]
        if not texts:
            return list(objects), []
        with self._lock:
            try:
                if self._detector is None:
                    self._detector = TextDetector(
                        self.checkpoint, device=self.device, threshold=self.threshold
                    )
                with open_video(video) as vid:
                    prompts, found = text_prompts(
                        self._detector,
                        vid,
                        [o.text or "" for o in texts],
                        frame=frame,
                        picks=[o.pick for o in texts],
                    )
            except NoTextMatchError as exc:
                raise ApiError(400, exc.problem, "masks", "no_text_match") from None
            except ModelUnavailableError as exc:
                raise ApiError(503, f"text prompts need SAM 3: {exc}", "masks", "text_unavailable") from None
            except InputError as exc:
                raise ApiError(400, exc.problem, "masks", "bad_prompt") from None
        masks = iter(p.mask for p in prompts)
        out = [ObjectSpec(mask=next(masks)) if o.kind == "text" else o for o in objects]
        return out, found
