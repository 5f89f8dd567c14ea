"""What every front end configures, in one frozen object, and the one factory that builds the pipeline.

The CLI commands, batch QA, the evaluator, the API server, the web page and the demo scripts each parse
their own arguments into a :class:`GarVideoOptions` and call :func:`build_garvideo`; none of them builds a
:class:`~garvideo.pipeline.GarVideo` by hand. Example::

    from garvideo.options import GarVideoOptions, build_garvideo
    from garvideo.pipeline.settings import PipelineSettings

    options = GarVideoOptions(model="HaochenWang/GAR-1B", tracker="sam2",
                              sam2_checkpoint="sam2.1_hiera_large.pt",
                              settings=PipelineSettings(num_frames=8))
    gv = build_garvideo(options).load()   # load(): the weights and the tracker, now
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from garvideo.pipeline.settings import PipelineSettings

if TYPE_CHECKING:
    from garvideo.model.loading import GarBundle
    from garvideo.pipeline.facade import GarVideo
    from garvideo.trackers.base import Tracker

__all__ = ["GarVideoOptions", "build_garvideo"]


@dataclass(frozen=True)
class GarVideoOptions:
    """The model, the tracker (and its checkpoints / options), the device and the pipeline settings.

    Args:
        model: hub id or local folder of a GAR checkpoint, or an already loaded
            :class:`~garvideo.model.GarBundle` (shared by several pipelines, as in the tests); ``None``:
            ``$GARVIDEO_MODEL`` or ``HaochenWang/GAR-1B``.
        tracker: ``"auto"`` | ``"sam2"`` | ``"sam3"`` | ``"edgetam"`` | ``"flow"`` | ``"static"``, or a
            built :class:`~garvideo.trackers.Tracker` (then the checkpoints and ``flow_options`` are unused).
        sam2_checkpoint, sam3_checkpoint, edgetam_checkpoint: the trackers' checkpoints (``None``: each
            tracker's own default lookup).
        flow_options: :class:`garvideo.trackers.FlowOptions` fields for the flow tracker (already parsed,
            e.g. by :func:`garvideo.trackers.parse_flow_options`).
        device: ``"cuda"``, ``"cuda:1"``, ``"cpu"``; ``None``: CUDA when available (under torchrun,
            ``cuda:$LOCAL_RANK``; see :func:`build_garvideo`).
        dtype: ``"auto"``, ``"bfloat16"``, ``"float32"``, ...; ``None``: ``$GARVIDEO_DTYPE``, else ``"auto"``.
        settings: K, keyframe strategy, prompt frame, fps, RoI mode, new tokens.
    """

    model: str | os.PathLike[str] | GarBundle | None = None
    tracker: str | Tracker = "auto"
    sam2_checkpoint: str | None = None
    sam3_checkpoint: str | None = None
    edgetam_checkpoint: str | None = None
    flow_options: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = None
    dtype: str | None = None
    settings: PipelineSettings = field(default_factory=PipelineSettings)

    def tracker_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`garvideo.trackers.build_tracker` besides the tracker's name."""
        out: dict[str, Any] = dict(self.flow_options)
        for key in ("sam2_checkpoint", "sam3_checkpoint", "edgetam_checkpoint"):
            value = getattr(self, key)
            if value is not None:
                out[key] = os.fspath(value)
        return out


def build_garvideo(options: GarVideoOptions, *, env: Mapping[str, str] | None = None) -> GarVideo:
    """The :class:`~garvideo.pipeline.GarVideo` of ``options``; nothing is loaded until
    :meth:`~garvideo.pipeline.GarVideo.load` (or first use).

    Under torchrun (``LOCAL_RANK`` in ``env``, default ``os.environ``) with CUDA and no ``device``
    given, each rank uses ``cuda:LOCAL_RANK``, so ``torchrun --nproc-per-node N`` spreads shards over N
    GPUs.
    """
    # Function-local: the facade imports torch; the options themselves (and the CLI's option parsing) don't.
    from garvideo.pipeline.facade import GarVideo

    env = os.environ if env is None else env
    device = options.device
    if device is None and "LOCAL_RANK" in env:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(env['LOCAL_RANK'])}"
    return GarVideo(
        model=options.model,
        tracker=options.tracker,
        device=device,
        dtype=options.dtype,
        settings=options.settings,
        tracker_options=options.tracker_options(),
    )
