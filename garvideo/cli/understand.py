"""``garvideo describe`` and ``garvideo ask``: region-level understanding of a clip with GAR.

Parsing and printing only; the work is :class:`garvideo.pipeline.GarVideo`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from garvideo.cli._progress import progress_bar

MODEL_HELP = "GAR checkpoint: hub id or local folder (default: GARVIDEO_MODEL, else HaochenWang/GAR-1B)."
TRACKER_HELP = "Mask propagation: auto (sam2 when a checkpoint is found, else flow), sam2, flow or static."
MASK_HELP = (
    "Mask of the object(s) on --frame (PNG id map / 0-255, .npy, COCO RLE .json); repeat for more objects."
)


def _pipeline(
    model: str | None,
    tracker: str,
    sam2_checkpoint: Path | None,
    num_frames: int,
    keyframes: str,
    include_prompt_frame: bool,
    roi_mode: str,
    device: str | None,
    dtype: str | None,
    max_new_tokens: int,
) -> Any:
    from garvideo.pipeline import GarVideo

    options: dict[str, Any] = {}
    if sam2_checkpoint is not None:
        options["sam2_checkpoint"] = str(sam2_checkpoint)
    return GarVideo(
        model=model,
        tracker=tracker,
        num_frames=num_frames,
        keyframes=keyframes,
        roi_mode=roi_mode,
        device=device,
        dtype=dtype,
        include_prompt_frame=include_prompt_frame,
        max_new_tokens=max_new_tokens,
        tracker_options=options,
    )


def _prepare(gv: Any, vid: Any, masks: list[Any], frame: int, quiet: bool, **kwargs: Any) -> Any:
    """``gv.prepare`` the clip under a progress bar of the tracking pass (none when ``quiet``)."""
    with progress_bar("tracking", enabled=not quiet) as bar:
        progress = None if bar is None else bar.count
        return gv.prepare(vid, masks=masks, frame=frame, progress=progress, **kwargs)


def _load(video_path: Path, masks: list[Path], resize_masks: bool) -> tuple[Any, list[Any]]:
    from garvideo.errors import InputError
    from garvideo.masks import load_masks
    from garvideo.video import open_video

    if not masks:
        raise InputError("--mask", "give at least one mask")
    video = open_video(video_path)
    return video, load_masks(masks, (video.height, video.width), resize=resize_masks)


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        typer.echo(f"note: {note}", err=True)


def _streamer(enabled: bool) -> Callable[[str], None] | None:
    if not enabled:
        return None

    def write(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    return write


# Options shared by describe and ask (typer reads them from the signature, so each command lists them).
VideoArg = Annotated[Path, typer.Argument(help="Video file or folder of frames.", show_default=False)]
MaskOpt = Annotated[list[Path], typer.Option("--mask", "-m", help=MASK_HELP, show_default=False)]
FrameOpt = Annotated[int, typer.Option("--frame", "-f", min=0, help="Frame the masks belong to (0-based).")]
KOpt = Annotated[
    int, typer.Option("--num-frames", "-k", min=1, help="Keyframes K (reduced if the context needs it).")
]
KeyframesOpt = Annotated[
    str, typer.Option("--keyframes", help="Keyframe strategy: uniform, videorefer, visible or fps.")
]
IncludeOpt = Annotated[bool, typer.Option("--include-prompt-frame", help="Make the prompt frame a keyframe.")]
TrackerOpt = Annotated[str, typer.Option("--tracker", help=TRACKER_HELP)]
Sam2Opt = Annotated[
    Path | None, typer.Option("--sam2-checkpoint", help="SAM 2.1 checkpoint (.pt) for the sam2 tracker.")
]
ModelOpt = Annotated[str | None, typer.Option("--model", help=MODEL_HELP)]
RoiOpt = Annotated[
    str,
    typer.Option("--roi-mode", help="RoI replay: official (as the checkpoints were trained) or corrected."),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda, cuda:1 … (default: cuda when available).")
]
DtypeOpt = Annotated[
    str | None, typer.Option("--dtype", help="float32 or bfloat16 (default: bf16 on GPU, float32 on CPU).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object (no streaming).")]
NewTokOpt = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Most tokens to generate.")]
ResizeOpt = Annotated[
    bool, typer.Option("--resize-masks", help="Resize masks to the video size instead of failing.")
]


def describe(
    video: VideoArg,
    mask: MaskOpt,
    frame: FrameOpt = 0,
    num_frames: KOpt = 8,
    keyframes: KeyframesOpt = "uniform",
    include_prompt_frame: IncludeOpt = False,
    tracker: TrackerOpt = "auto",
    sam2_checkpoint: Sam2Opt = None,
    model: ModelOpt = None,
    roi_mode: RoiOpt = "official",
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    as_json: JsonOpt = False,
    overlay: Annotated[
        Path | None,
        typer.Option("--overlay", help="Write the clip with the masks and the description (.mp4)."),
    ] = None,
    max_new_tokens: NewTokOpt = 512,
    resize_masks: ResizeOpt = False,
) -> None:
    """Describe the masked object(s) of a clip: track them, pick K keyframes, ask GAR.

    The description streams to the terminal as it is generated (not with --json, which prints
    {"text", "frames", "objects", "tracker", "model", "timings", "notes"}). Without model weights
    (offline, none on disk) the objects are still tracked and --overlay is written, then the
    command stops with a message saying how to get the weights (exit 2).

    Example: garvideo describe clip.mp4 --mask dog.png --frame 0 --num-frames 8 --overlay out.mp4
    """
    from garvideo.pipeline import load_model_or_none

    gv = _pipeline(model, tracker, sam2_checkpoint, num_frames, keyframes, include_prompt_frame,
                   roi_mode, device, dtype, max_new_tokens)
    vid, masks = _load(video, mask, resize_masks)
    with vid:
        missing = load_model_or_none(gv)
        clip = _prepare(
            gv, vid, masks, frame, as_json, encode=missing is None, track_all_frames=overlay is not None
        )
        if missing is not None:
            if overlay is not None:
                _write_overlay(vid, clip, overlay, None, as_json)
            raise missing
        stream = _streamer(not as_json and sys.stdout.isatty())
        result = gv.describe(clip, stream=stream)
        if overlay is not None:
            _write_overlay(vid, clip, overlay, result.text, as_json)
        clip.close()
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    if stream is not None:
        sys.stdout.write("\n")
    else:
        typer.echo(result.text)
    _print_notes(result.notes)


def _write_overlay(vid: Any, clip: Any, out: Path, caption: str | None, quiet: bool) -> None:
    from garvideo.overlay import render_overlay

    path = render_overlay(vid, clip.masks_by_frame(), out, caption=caption or None)
    if not quiet:
        typer.echo(f"overlay written to {path}", err=True)


def ask(
    video: VideoArg,
    mask: MaskOpt,
    question: Annotated[
        str,
        typer.Option(
            "--question", "-q", help="The question; objects are <object0>, <object1>, … in --mask order."
        ),
    ],
    option: Annotated[
        list[str] | None,
        typer.Option("--option", help="An answer option (repeat; lettered A, B, … in order)."),
    ] = None,
    frame: FrameOpt = 0,
    num_frames: KOpt = 8,
    keyframes: KeyframesOpt = "uniform",
    include_prompt_frame: IncludeOpt = False,
    tracker: TrackerOpt = "auto",
    sam2_checkpoint: Sam2Opt = None,
    model: ModelOpt = None,
    roi_mode: RoiOpt = "official",
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    as_json: JsonOpt = False,
    max_new_tokens: NewTokOpt = 512,
    resize_masks: ResizeOpt = False,
) -> None:
    """Answer a question about the masked object(s) of a clip, free-form or multiple choice.

    With --option, GAR answers with an option letter (printed, with --json as "letter").
    --json prints {"text", "letter", "question", "options", "frames", "objects", "tracker", "model",
    "timings", "notes"}.

    Example: garvideo ask clip.mp4 --mask a.png --mask b.png --question "What is <object0> doing to <object1>?" --option "chasing it" --option "ignoring it"
    """
    gv = _pipeline(model, tracker, sam2_checkpoint, num_frames, keyframes, include_prompt_frame,
                   roi_mode, device, dtype, max_new_tokens)
    vid, masks = _load(video, mask, resize_masks)
    with vid:
        gv.bundle  # noqa: B018 - fail on missing weights before tracking
        clip = _prepare(gv, vid, masks, frame, as_json)
        result = gv.ask(clip, question, options=option or None)
        clip.close()
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    typer.echo(result.text)
    notes = list(result.notes)
    if result.options is not None and result.letter is None:
        notes.append("the answer names none of the options' letters")
    _print_notes(notes)


def register(app: typer.Typer) -> None:
    """Add ``describe`` and ``ask`` to ``app``."""
    app.command("describe")(describe)
    app.command("ask")(ask)
