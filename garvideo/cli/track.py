"""``garvideo track``: propagate masks (or SAM 2 point/box prompts) through a clip; write DAVIS palette
PNGs, per-frame COCO RLE, an overlay video."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from garvideo.cli._checks import check_frame, check_outputs, interrupt_hint
from garvideo.cli._options import (
    BoxOpt,
    DeviceOpt,
    EdgetamOpt,
    FlowOpt,
    FrameOpt,
    MaskOpt,
    PointsOpt,
    ResizeOpt,
    Sam2Opt,
    Sam3Opt,
    TextOpt,
    TextPickOpt,
    TextThresholdOpt,
    TrackerOpt,
    VideoArg,
    garvideo_options,
)
from garvideo.cli._progress import progress_bar
from garvideo.cli._text import print_text_notes, text_objects
from garvideo.errors import InputError
from garvideo.masks import load_masks, save_palette_png, track_to_rle, write_track_rle
from garvideo.overlay import render_overlay
from garvideo.trackers import build_prompts, build_tracker
from garvideo.trackers.prompts import require_sam2
from garvideo.video import open_video


def track(
    video: VideoArg,
    mask: MaskOpt = None,  # type: ignore[assignment]
    points: PointsOpt = None,
    box: BoxOpt = None,
    text: TextOpt = None,
    text_pick: TextPickOpt = None,
    text_threshold: TextThresholdOpt = 0.5,
    frame: FrameOpt = 0,
    tracker: TrackerOpt = "auto",
    sam2_checkpoint: Sam2Opt = None,
    sam3_checkpoint: Sam3Opt = None,
    edgetam_checkpoint: EdgetamOpt = None,
    flow_option: FlowOpt = None,
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
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for DAVIS-style palette PNGs {frame:05d}.png (object k = value k+1)."
        ),
    ] = None,
    rle: Annotated[
        Path | None,
        typer.Option("--rle", help="Write per-frame COCO RLE per object to this .json (VideoRefer layout)."),
    ] = None,
    overlay: Annotated[
        Path | None,
        typer.Option("--overlay", help="Also write the clip with masks drawn (.mp4 H.264, or .webm)."),
    ] = None,
    resize_masks: ResizeOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of text.")] = False,
    with_masks: Annotated[
        bool, typer.Option("--with-masks", help="With --json: include the masks as COCO RLE ('masks').")
    ] = False,
) -> None:
    """Propagate objects from one frame to the whole clip (both ways from --frame).

    Objects come from --mask files, --points clicks, --box boxes (points and boxes need sam2, sam3 or
    edgetam) and --text names (SAM 3's detector on --frame; --json lists the candidates under "text_prompts");
    they are object0, object1, … in that order. OUT/{frame:05d}.png is a DAVIS-style palette PNG
    (mode P, 0 = background, objectK = K+1); --rle writes {"size", "objects", "annotation": [per
    object {frame: {"segmentation": COCO RLE} | null}]}. Which tracker ran, and why, goes to stderr
    (JSON: "tracker", "tracker_reason").

    Example: garvideo track clip.mp4 --mask dog.png --box 10,20,120,200 --frame 0 --out masks/ --rle masks.json --overlay dog.mp4
    """
    if out is None and overlay is None and rle is None and not as_json:
        raise InputError(
            "out",
            "give --out DIR (and/or --rle OUT.json, --overlay OUT.mp4 or --json); nothing would be written",
        )
    if not (mask or points or box or text):
        raise InputError(
            "masks",
            "give at least one object: --mask FILE, --points 'x,y', --box 'x0,y0,x1,y1' or --text 'the dog'",
        )
    check_outputs(out=(out, True), rle=(rle, False), overlay=(overlay, False))
    options = garvideo_options(
        tracker=tracker,
        sam2_checkpoint=sam2_checkpoint,
        sam3_checkpoint=sam3_checkpoint,
        edgetam_checkpoint=edgetam_checkpoint,
        flow_option=flow_option,
        device=device,
    )
    with interrupt_hint("tracking stopped; nothing was written") as stage, open_video(video) as vid:
        check_frame(frame, vid.num_frames)
        masks = load_masks(mask or [], (vid.height, vid.width), resize=resize_masks)
        prompts = build_prompts(masks, points or [], box or [], frame)
        text_prompts, found = text_objects(
            vid, text or [], text_pick or [], frame, len(prompts) + 1,
            checkpoint=sam3_checkpoint, threshold=text_threshold, device=device,
        )  # fmt: skip
        n_before_text = len(prompts)
        prompts += text_prompts
        only_track = {
            "sam2_config": sam2_config,
            "image_size": image_size,
            "device": device,
            "threads": threads,
        }
        given = {k: v for k, v in only_track.items() if v is not None}
        trk = build_tracker(tracker, **options.tracker_options(), **given)
        require_sam2(trk, prompts)
        with progress_bar(f"tracking ({trk.name})", enabled=not as_json) as bar:
            result = trk.track(
                vid, prompts, start=start, end=end, stride=stride, progress=None if bar is None else bar.count
            )
        ids = result.object_ids
        if out is not None:
            stage.text = f"writing the masks stopped: {out}/ is incomplete; rerunning the command tracks again and rewrites it"
            out.mkdir(parents=True, exist_ok=True)
            for fi in result.frames:
                save_palette_png(out / f"{fi:05d}.png", [result.mask(fi, o) for o in ids], ids)
        annotation = None
        if rle is not None or with_masks:  # encoded frame by frame (a long track is never all decoded)
            annotation = track_to_rle(
                ((fi, [result.mask(fi, o) for o in ids]) for fi in result.frames), len(ids)
            )
        if rle is not None:
            write_track_rle(
                rle, annotation or [], (vid.height, vid.width), tracker=result.tracker,
                tracker_reason=result.reason,
            )  # fmt: skip
        if overlay is not None:
            stage.text = f"writing the overlay stopped: {overlay} is incomplete; rerunning the command tracks again and rewrites it"
            render_overlay(vid, result, overlay)
    summary = result.summary()
    summary["out"] = None if out is None else str(out)
    summary["rle"] = None if rle is None else str(rle)
    summary["overlay"] = None if overlay is None else str(overlay)
    if found:
        summary["text_prompts"] = [det.to_json() for det in found]
    if with_masks and annotation is not None:
        summary["masks"] = annotation
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"tracker: {result.reason}", err=True)
    print_text_notes(found, n_before_text)
    t = result.timings
    typer.echo(
        f"{len(result.frames)} frames tracked with {result.tracker} in {t['total']:.1f} s "
        f"({t['frames_per_second']:.1f} frames/s)"
    )
    for k, o in enumerate(ids):
        typer.echo(f"  object{k}: visible on {len(result.visible_frames(o))} of {len(result.frames)} frames")
    if out is not None:
        typer.echo(f"masks: {out}/")
    if rle is not None:
        typer.echo(f"rle: {rle}")
    if overlay is not None:
        typer.echo(f"overlay: {overlay}")


def register(app: typer.Typer) -> None:
    app.command("track")(track)
