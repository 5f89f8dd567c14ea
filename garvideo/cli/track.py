"""``garvideo track``: propagate masks through a clip and write one id-map PNG per frame."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from garvideo.cli._options import DeviceOpt, FrameOpt, MaskOpt, ResizeOpt, Sam2Opt, TrackerOpt, VideoArg
from garvideo.cli._progress import progress_bar


def track(
    video: VideoArg,
    mask: MaskOpt,
    frame: FrameOpt = 0,
    tracker: TrackerOpt = "auto",
    sam2_checkpoint: Sam2Opt = None,
    sam2_config: Annotated[
        str | None,
        typer.Option(
            "--sam2-config", help="sam2.1_hiera_t | _s | _b+ | _l (default: from the checkpoint name)."
        ),
    ] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="SAM2 input size (e.g. 512 on CPU).")
    ] = None,
    device: DeviceOpt = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads for torch and OpenCV.")
    ] = None,
    start: Annotated[int | None, typer.Option("--start", help="First frame to keep (default 0).")] = None,
    end: Annotated[
        int | None, typer.Option("--end", help="Frame after the last one to keep (default: all).")
    ] = None,
    stride: Annotated[int, typer.Option("--stride", help="Keep every STRIDE-th frame from --start.")] = 1,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for the {frame:05d}.png id maps.")
    ] = None,
    overlay: Annotated[
        Path | None, typer.Option("--overlay", help="Also write the clip with masks drawn (.mp4).")
    ] = None,
    resize_masks: ResizeOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of text.")] = False,
) -> None:
    """Propagate object masks from one frame to the whole clip (both ways from --frame).

    Writes OUT/{frame:05d}.png per frame: mode L, pixel = object id (0 = background).

    Example: garvideo track clip.mp4 --mask dog.png --frame 0 --out masks/ --overlay dog.mp4
    """
    from garvideo.cli._checks import check_device, check_frame, check_tracker, interrupt_hint
    from garvideo.errors import InputError
    from garvideo.masks import load_masks, save_id_map
    from garvideo.trackers import Prompt, build_tracker
    from garvideo.video import open_video

    if out is None and overlay is None and not as_json:
        raise InputError(
            "--out", "give --out DIR (and/or --overlay OUT.mp4 or --json); nothing would be written"
        )
    if out is not None and out.exists() and not out.is_dir():
        raise InputError(out, "is a file; --out takes a folder (one id-map PNG per frame is written there)")
    check_tracker(tracker)
    check_device(device)
    with interrupt_hint("tracking stopped; nothing was written") as stage, open_video(video) as vid:
        check_frame(frame, vid.num_frames)
        masks = load_masks(mask, (vid.height, vid.width), resize=resize_masks)
        prompts = [Prompt(obj_id=i, frame=frame, mask=m) for i, m in enumerate(masks, start=1)]
        options = {
            k: v
            for k, v in {
                "sam2_checkpoint": sam2_checkpoint,
                "sam2_config": sam2_config,
                "image_size": image_size,
                "device": device,
                "threads": threads,
            }.items()
            if v is not None
        }
        trk = build_tracker(tracker, **options)
        with progress_bar(f"tracking ({trk.name})", enabled=not as_json) as bar:
            result = trk.track(
                vid, prompts, start=start, end=end, stride=stride, progress=None if bar is None else bar.count
            )
        if out is not None:
            stage.text = f"writing the masks stopped: {out}/ is incomplete; rerun the command"
            out.mkdir(parents=True, exist_ok=True)
            for fi in result.frames:
                save_id_map(
                    out / f"{fi:05d}.png", [result.mask(fi, o) for o in result.object_ids], result.object_ids
                )
        if overlay is not None:
            from garvideo.overlay import render_overlay

            stage.text = f"writing the overlay stopped: {overlay} is incomplete; rerun the command"
            render_overlay(vid, result, overlay)
    summary = result.summary()
    summary["out"] = None if out is None else str(out)
    summary["overlay"] = None if overlay is None else str(overlay)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    t = result.timings
    picked = f" ({result.info['selection']})" if result.info.get("selection") else ""
    typer.echo(
        f"{len(result.frames)} frames tracked with {result.tracker}{picked} in {t['total']:.1f} s "
        f"({t['frames_per_second']:.1f} frames/s)"
    )
    for o in result.object_ids:
        typer.echo(f"  object {o}: visible on {len(result.visible_frames(o))} of {len(result.frames)} frames")
    if out is not None:
        typer.echo(f"masks: {out}/")
    if overlay is not None:
        typer.echo(f"overlay: {overlay}")


def register(app: typer.Typer) -> None:
    app.command("track")(track)
