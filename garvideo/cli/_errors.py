"""The CLI's words for the library's errors: library fields (``num_frames``) become the flags a user typed
(``--num-frames``). One table, :data:`FIELD_FLAGS`; the API server and the web page have their own."""

from __future__ import annotations

from garvideo.errors import InputError

__all__ = ["FIELD_FLAGS", "error_line", "flag_for"]

#: Library field (an :class:`~garvideo.errors.InputError`'s ``source``) -> the CLI flag that sets it.
#: A source not listed (a path, a record id) is printed as it is.
FIELD_FLAGS: dict[str, str] = {
    "model": "--model",
    "tracker": "--tracker",
    "device": "--device",
    "dtype": "--dtype",
    "sam2_checkpoint": "--sam2-checkpoint",
    "sam2_config": "--sam2-config",
    "sam3_checkpoint": "--sam3-checkpoint",
    "edgetam_checkpoint": "--edgetam-checkpoint",
    "flow_options": "--flow-option",
    "num_frames": "--num-frames",
    "keyframes": "--keyframes",
    "include_prompt_frame": "--include-prompt-frame",
    "per_second": "per_second (no flag; keyframes=fps uses 1 per second)",
    "roi_mode": "--roi-mode",
    "max_new_tokens": "--max-new-tokens",
    "video": "VIDEO",  # the commands' positional argument, as click names it
    "masks": "--mask",
    "mask": "--mask",
    "frame": "--frame",
    "points": "--points",
    "box": "--box",
    "points/box": "--points/--box",
    "text": "--text",
    "text_pick": "--text-pick",
    "text_threshold": "--text-threshold",
    "question": "--question",
    "options": "--option",
    "mode": "--mode",
    "types": "--types",
    "out": "--out",
    "overlay": "--overlay",
    "shard": "--shard",
    "batch_size": "--batch-size",
    "prefetch": "--prefetch",
    "limit": "--limit",
    "root": "--root",
    "video_root": "--video-root",
    "start": "--start",
    "end": "--end",
    "stride": "--stride",
    "backend": "backend (the video backend: $GARVIDEO_VIDEO_BACKEND)",
    "image_size": "--image-size",
    "kind": "--kind",
    "port": "--port",
    "threads": "--threads",
    # the recorded run settings (garvideo.runs.settings) a rerun is compared on
    "model_revision": "--model (its revision)",
    "model_hash": "--model (its config and weights)",
    "tracker_checkpoint": "--tracker (its checkpoint)",
    "tracker_options": "--flow-option",
    "region_order": "prompt conventions (region_order)",
    "text_nms_iou": "text NMS IoU",
    "text_checkpoint": "--sam3-checkpoint",
    "text_checkpoint_revision": "--sam3-checkpoint (its revision)",
    "text_checkpoint_hash": "--sam3-checkpoint (its config and weights)",
    "garvideo": "garvideo version",
}


def flag_for(source: str | None) -> str | None:
    """The CLI's name for an error source: its flag when it is a library field, else unchanged."""
    if source is None:
        return None
    return FIELD_FLAGS.get(source, source)


def error_line(exc: Exception) -> str:
    """The one stderr line for a garvideo error: ``error: <flag or path>: <problem>``."""
    if isinstance(exc, InputError) and exc.source is not None:
        text = f"{flag_for(exc.source)}: {exc.problem}"
    else:
        text = str(exc)
    return f"error: {' '.join(text.split())}"
