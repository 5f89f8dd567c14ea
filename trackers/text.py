"""Text prompts: name an object in words, get its mask on the prompt frame from SAM 3's concept detector.

``Sam3Model`` + ``Sam3Processor`` (transformers) score every detector query against the text on one frame; each
query gives a score (query logit times the image-level presence score, as transformers'
``post_process_instance_segmentation``), a box and a mask. :class:`TextDetector` lists them as
:class:`TextCandidate` (best first), keeps those above a threshold, and removes duplicates itself: the official
SAM 3 pipeline's NMS and hole filling come from the ``kernels`` package and a hub download, which transformers
skips silently offline, so here a greedy NMS on mask IoU (:data:`NMS_IOU`) runs instead (numpy, no download).
The chosen candidate's mask then becomes an ordinary mask prompt, tracked by whichever tracker runs (``flow``
included).

Example::

    from garvideo.trackers.text import TextDetector, text_prompts

    detector = TextDetector()  # facebook/sam3 (gated: accept the licence, `hf auth login`), or a folder
    prompts, found = text_prompts(detector, video, ["the swan"], frame=0, first_id=1)
    found[0].candidates[0].score
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from garvideo.errors import InputError
from garvideo.trackers.base import Prompt, VideoLike
from garvideo.trackers.hf_video import KINDS, require_classes, resolve_checkpoint

logger = logging.getLogger(__name__)

#: Default score a candidate needs (SAM 3's video pipeline detects at 0.5).
DEFAULT_THRESHOLD = 0.5
#: Candidates whose masks overlap an earlier (better) one by more than this IoU are dropped (garvideo's NMS).
NMS_IOU = 0.5
#: How many of the best scores a "no match" message lists.
BEST_LISTED = 5


class NoTextMatchError(InputError):
    """No candidate of a text prompt scored above the threshold (the CLI exits 2 with it)."""


@dataclass(frozen=True)
class TextCandidate:
    """One object the detector found for a text.

    Attributes:
        rank: position in the list, 0 = best (what ``--text-pick`` counts).
        query: the detector query it came from.
        score: in [0, 1]: the query's score times the presence score.
        box: ``(x0, y0, x1, y1)`` in pixels of the frame.
        area: mask area in pixels.
        mask: (H, W) bool mask on the frame, as the detector produced it (upsampled, thresholded at 0.5).
    """

    rank: int
    query: int
    score: float
    box: tuple[float, float, float, float]
    area: int
    mask: np.ndarray = field(repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "query": self.query,
            "score": round(self.score, 6),
            "box": [round(v, 2) for v in self.box],
            "area": self.area,
        }


@dataclass(frozen=True)
class TextDetection:
    """What the detector found for one text on one frame.

    Attributes:
        text: the prompt.
        frame: the frame it was run on.
        threshold: the score a candidate needed.
        candidates: those above ``threshold``, non-empty, after NMS, best first.
        best_scores: the best raw query scores (above the threshold or not), for messages.
        picked: rank of the candidate used as the object (``None`` until :func:`text_prompts` picks).
    """

    text: str
    frame: int
    threshold: float
    candidates: list[TextCandidate]
    best_scores: list[float]
    picked: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "frame": self.frame,
            "threshold": self.threshold,
            "picked": self.picked,
            "candidates": [c.to_json() for c in self.candidates],
            "best_scores": [round(s, 6) for s in self.best_scores],
        }


def mask_nms(masks: np.ndarray, order: Sequence[int], iou: float = NMS_IOU) -> list[int]:
    """Greedy NMS on mask IoU: the indices of ``order`` (best first) kept, in that order.

    Args:
        masks: (N, H, W) bool.
        order: candidate indices, best first.
        iou: a candidate overlapping a kept one by more than this is dropped.
    """
    flat = masks.reshape(len(masks), -1).astype(np.float32)  # (N, H*W)
    areas = flat.sum(1)
    kept: list[int] = []
    for i in order:
        if kept:
            inter = flat[kept] @ flat[i]  # (K,)
            union = areas[kept] + areas[i] - inter
            if (inter / np.maximum(union, 1.0) > iou).any():
                continue
        kept.append(int(i))
    return kept


class TextDetector:
    """SAM 3's concept detector (``Sam3Model``) on single frames.

    Args:
        checkpoint: a SAM 3 folder or hub id (default: ``$GARVIDEO_SAM3_CHECKPOINT``, else ``facebook/sam3``);
            the tracker's checkpoint holds the detector too.
        device: ``"cuda"``, ``"cpu"`` or ``None`` (CUDA when available); float32.
        threshold: score a candidate needs (default :data:`DEFAULT_THRESHOLD`).
        nms_iou: see :func:`mask_nms`.
        model, processor: already built ones (tests); no checkpoint is read then.

    Raises:
        ModelUnavailableError: no SAM 3 in the installed transformers, or weights not available (gated, offline).
        InputError: a folder that is not a SAM 3 checkpoint.
    """

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        nms_iou: float = NMS_IOU,
        model: Any = None,
        processor: Any = None,
    ) -> None:
        import torch  # here, not at the top: importing this module stays light (no torch)

        if not 0.0 <= float(threshold) <= 1.0:
            raise InputError("text_threshold", f"must be in 0..1, got {threshold}")
        self.threshold = float(threshold)
        self.nms_iou = float(nms_iou)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.checkpoint: str | None = None  # the folder read
        self.checkpoint_name: str | None = None  # as asked for (a hub id or a folder), for run settings
        if model is not None:
            self.model, self.processor = model.to(self.device).eval(), processor
            return
        tf = require_classes("sam3")
        folder = resolve_checkpoint("sam3", checkpoint)
        try:
            self.model = tf.Sam3Model.from_pretrained(str(folder)).to(self.device).float().eval()
            self.processor = tf.Sam3Processor.from_pretrained(str(folder))
        except Exception as exc:  # noqa: BLE001 - any failure to read is bad input
            first = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise InputError(
                folder, f"not a SAM 3 checkpoint folder ({type(exc).__name__}: {first})"
            ) from None
        self.checkpoint = str(folder)
        self.checkpoint_name = str(checkpoint or os.environ.get(KINDS["sam3"].env) or KINDS["sam3"].hub_id)

    def raw(self, image: np.ndarray, text: str) -> dict[str, np.ndarray]:
        """Every query's ``scores`` (Q,), ``boxes`` (Q, 4) pixels and ``masks`` (Q, H, W) bool, as
        ``Sam3Processor.post_process_instance_segmentation`` gives them with no threshold."""
        import torch

        h, w = image.shape[:2]
        inputs = self.processor(images=image, text=text, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
            res = self.processor.post_process_instance_segmentation(
                outputs, threshold=-1.0, mask_threshold=0.5, target_sizes=[(h, w)]
            )[0]
        return {
            "scores": res["scores"].float().cpu().numpy(),
            "boxes": res["boxes"].float().cpu().numpy(),
            "masks": res["masks"].bool().cpu().numpy(),
        }

    def detect(self, image: np.ndarray, text: str, frame: int = 0) -> TextDetection:
        """The candidates for ``text`` on ``image`` ((H, W, 3) uint8 RGB), best first.

        Raises:
            InputError: an empty text.
        """
        if not text.strip():
            raise InputError("text", "the text is empty")
        raw = self.raw(image, text)
        scores, boxes, masks = raw["scores"], raw["boxes"], raw["masks"]
        order = [int(i) for i in np.argsort(-scores, kind="stable")]
        above = [i for i in order if scores[i] > self.threshold and masks[i].any()]
        kept = mask_nms(masks, above, self.nms_iou) if above else []
        cands = [
            TextCandidate(
                rank=r,
                query=i,
                score=float(scores[i]),
                box=tuple(float(v) for v in boxes[i]),  # type: ignore[arg-type]
                area=int(masks[i].sum()),
                mask=masks[i],
            )
            for r, i in enumerate(kept)
        ]
        best = [float(scores[i]) for i in order[:BEST_LISTED]]
        logger.info(
            "text %r on frame %d: %d candidate(s) above %.2f", text, frame, len(cands), self.threshold
        )
        return TextDetection(
            text=text, frame=frame, threshold=self.threshold, candidates=cands, best_scores=best
        )


def _frame_image(video: VideoLike, frame: int) -> np.ndarray:
    for _, image in video.frames([frame]):
        return image
    raise InputError("frame", f"frame {frame} could not be read")


def text_prompts(
    detector: TextDetector,
    video: VideoLike,
    texts: Sequence[str],
    frame: int = 0,
    first_id: int = 1,
    picks: Sequence[int] = (),
) -> tuple[list[Prompt], list[TextDetection]]:
    """One mask :class:`Prompt` per text on ``frame``, ids from ``first_id``: the candidate of rank
    ``picks[k]`` (default 0, the best) of the k-th text.

    Returns:
        the prompts and, per text, its :class:`TextDetection` (``picked`` set).

    Raises:
        NoTextMatchError: a text with no candidate above the threshold (the message lists the best scores).
        InputError: more picks than texts, a pick beyond the candidates.
    """
    if len(picks) > len(texts):
        raise InputError(
            "text_pick", f"{len(picks)} picks for {len(texts)} text prompt(s); give one per text"
        )
    if not texts:
        return [], []
    image = _frame_image(video, frame)
    prompts: list[Prompt] = []
    found: list[TextDetection] = []
    for k, text in enumerate(texts):
        det = detector.detect(image, text, frame)
        if not det.candidates:
            best = ", ".join(f"{s:.3f}" for s in det.best_scores) or "none"
            raise NoTextMatchError(
                f'--text "{text}"',
                f"no object scored above the threshold {det.threshold:g} on frame {frame} (best scores: {best}); "
                "reword it, lower --text-threshold, or give a --mask / --points / --box",
            )
        pick = int(picks[k]) if k < len(picks) else 0
        if not 0 <= pick < len(det.candidates):
            raise InputError(
                "text_pick",
                f'{pick} is out of range for "{text}": {len(det.candidates)} candidate(s), ranks 0..{len(det.candidates) - 1}',
            )
        chosen = det.candidates[pick]
        prompts.append(Prompt(obj_id=first_id + k, frame=frame, mask=chosen.mask))
        found.append(TextDetection(det.text, det.frame, det.threshold, det.candidates, det.best_scores, pick))
    return prompts, found
