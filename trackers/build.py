"""Build a tracker by name (:func:`build_tracker`) and find the SAM 2 checkpoint ``auto`` uses
(:func:`resolve_sam2`); the package root :mod:`garvideo.trackers` re-exports these.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

from garvideo import hub  # module attributes: looked up at call time (tests stand in for the hub)
from garvideo.errors import InputError
from garvideo.trackers import sam2_backend as sb
from garvideo.trackers.base import Tracker
from garvideo.trackers.flow import FlowOptions, FlowTracker
from garvideo.trackers.hf_video import KINDS, HfVideoTracker
from garvideo.trackers.names import CHECKPOINT_ENV, HOW_TO_GET_SAM2, TRACKERS
from garvideo.trackers.static import StaticTracker

# the package's logger name, as before the builders moved here (log lines read "garvideo.trackers")
logger = logging.getLogger("garvideo.trackers")


def find_sam2_checkpoint(checkpoint: str | None = None) -> str | None:
    """The SAM2 checkpoint ``auto`` would use: the option, else ``$GARVIDEO_SAM2_CHECKPOINT``, else a
    SAM 2.1 checkpoint already in the Hugging Face cache; ``None`` when there is none.

    A path given explicitly (option or environment) is returned as is, even if it does not exist,
    so that the sam2 backend reports the problem instead of silently falling back.
    """
    return resolve_sam2(checkpoint, download=False).checkpoint


@dataclass(frozen=True)
class Sam2Resolution:
    """What :func:`resolve_sam2` found: a checkpoint (``.pt`` path or hub id) or ``None``, and why."""

    checkpoint: str | None
    reason: str


def resolve_sam2(
    checkpoint: str | None = None, device: str | None = None, *, download: bool = True
) -> Sam2Resolution:
    """Find the SAM 2 checkpoint ``auto`` uses, downloading the default one when online.

    Order: ``checkpoint`` (``--sam2-checkpoint``), ``$GARVIDEO_SAM2_CHECKPOINT``, a SAM 2.1
    checkpoint in the Hugging Face cache, a download of :func:`~garvideo.trackers.sam2_backend.default_hub_checkpoint`
    for ``device`` (``huggingface_hub.hf_hub_download``; skipped with ``download=False``);
    ``checkpoint=None`` with the reason when the hub is offline (``HF_HUB_OFFLINE``), the download
    fails or the ``sam2`` package is missing.
    """
    if checkpoint:
        return Sam2Resolution(str(checkpoint), f"--sam2-checkpoint {checkpoint}")
    env = os.environ.get(CHECKPOINT_ENV)
    if env:
        return Sam2Resolution(env, f"${CHECKPOINT_ENV}={env}")
    if importlib.util.find_spec("sam2") is None:
        return Sam2Resolution(None, "the sam2 package is not installed (see the README: Install)")
    hit = sb.cached_hub_checkpoint()
    if hit is not None:
        return Sam2Resolution(hit, f"SAM 2.1 checkpoint in the Hugging Face cache ({hit})")
    repo = sb.default_hub_checkpoint(device)
    if not download:
        return Sam2Resolution(None, f"no SAM 2.1 checkpoint on disk ({repo} not downloaded)")
    if hub.hub_offline():
        return Sam2Resolution(
            None,
            f"offline (HF_HUB_OFFLINE) and no SAM 2.1 checkpoint on disk, so {repo} cannot be downloaded",
        )
    unreachable = hub.hub_unreachable()
    if unreachable is not None:
        return Sam2Resolution(
            None, f"no SAM 2.1 checkpoint on disk and {unreachable}, so {repo} cannot be downloaded"
        )
    logger.info("tracker auto: downloading %s (no SAM 2 checkpoint on disk)", repo)
    try:
        path = sb.download_hub_checkpoint(repo)
    except Exception as exc:  # noqa: BLE001 - network, gated repo, disk: fall back, and say so
        return Sam2Resolution(None, f"the download of {repo} failed ({type(exc).__name__}: {str(exc)[:120]})")
    kind = next(k for k, r in sb.DEFAULT_HUB_CHECKPOINT.items() if r == repo)
    return Sam2Resolution(path, f"downloaded {repo} (the default on {kind})")


def build_tracker(name: str = "auto", **options: object) -> Tracker:
    """Build a tracker by name.

    Args:
        name: ``"auto"`` (sam2 when a checkpoint is found — option ``sam2_checkpoint``,
            ``$GARVIDEO_SAM2_CHECKPOINT`` or the Hugging Face cache — flow otherwise), ``"sam2"``,
            ``"sam3"``, ``"edgetam"``, ``"flow"`` or ``"static"``.
        **options: backend options: for sam2 ``sam2_checkpoint``, ``sam2_config``, ``image_size``,
            ``device``, ``threads``...; for sam3 / edgetam ``sam3_checkpoint`` / ``edgetam_checkpoint``,
            ``device``, ``threads``, ``every_frame``; for flow the :class:`FlowOptions` fields and ``threads``.
            Options of the other backends are ignored (so one option set serves ``auto``).

    Returns:
        the tracker; its ``name`` says which backend was picked (also logged, and recorded in
        :attr:`TrackResult.tracker`).

    Raises:
        InputError: an unknown name or option, or an unreadable checkpoint.
    """
    if name not in TRACKERS:
        raise InputError("tracker", f"unknown tracker {name!r} (choose from {', '.join(TRACKERS)})")
    sam2_keys = {
        "sam2_checkpoint",
        "sam2_config",
        "image_size",
        "device",
        "threads",
        "fill_hole_area",
        "every_frame",
        "model",
    }
    flow_keys = set(FlowOptions.__dataclass_fields__) | {"threads"}
    hf_keys = {"sam3_checkpoint", "edgetam_checkpoint", "device", "threads", "every_frame"}
    if name == "auto":
        found = resolve_sam2(options.get("sam2_checkpoint"), options.get("device"))  # type: ignore[arg-type]
        if found.checkpoint is not None:
            name = "sam2"
            options = {**options, "sam2_checkpoint": found.checkpoint}
            selection = f"auto: sam2, {found.reason}"
        else:
            name = "flow"
            selection = f"auto: flow (weight-free, less accurate than SAM 2): {found.reason}; for SAM 2 {HOW_TO_GET_SAM2}"
    elif name in ("sam3", "edgetam"):
        ckpt = options.get(f"{name}_checkpoint") or os.environ.get(KINDS[name].env) or KINDS[name].hub_id
        selection = f"{name}: --tracker {name}, checkpoint {ckpt}"
    elif name == "sam2":
        ckpt = options.get("sam2_checkpoint") or os.environ.get(CHECKPOINT_ENV)
        selection = f"sam2: --tracker sam2, {'checkpoint ' + str(ckpt) if ckpt else 'model given'}"
    else:
        selection = f"{name}: --tracker {name}"
    logger.info("tracker %s", selection)
    unknown = set(options) - sam2_keys - flow_keys - hf_keys
    if unknown:
        raise InputError("tracker options", f"unknown option(s): {', '.join(sorted(unknown))}")
    tracker: Tracker
    if name == "static":
        tracker = StaticTracker()
    elif name == "flow":
        tracker = FlowTracker(**{k: v for k, v in options.items() if k in flow_keys})  # type: ignore[arg-type]
    elif name in ("sam3", "edgetam"):
        hf = {k: v for k, v in options.items() if k in {"device", "threads", "every_frame"}}
        tracker = HfVideoTracker(name, checkpoint=options.get(f"{name}_checkpoint"), **hf)  # type: ignore[arg-type]
    else:
        tracker = sb.Sam2Tracker(**{k: v for k, v in options.items() if k in sam2_keys})  # type: ignore[arg-type]
    tracker.selection = selection
    return tracker
