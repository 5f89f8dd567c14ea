"""``garvideo describe`` and ``garvideo ask``: region-level understanding of a clip with GAR.

Parsing and printing only; the work is :class:`garvideo.pipeline.GarVideo`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from garvideo.cli._checks import check_frame, check_objects, check_outputs, check_question, interrupt_hint
from garvideo.cli._options import (
    BoxOpt,
    DeviceOpt,
    DtypeOpt,
    EdgetamOpt,
    FlowOpt,
    FrameOpt,
    KeyframesOpt,
    KOpt,
    MaskOpt,
    ModelOpt,
    NewTokOpt,
    PointsOpt,
    ResizeOpt,
    RoiOpt,
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
from garvideo.errors import InputError, ModelUnavailableError
from garvideo.masks import load_masks
from garvideo.overlay import render_overlay
from garvideo.trackers import build_prompts, masks_from_prompts
from garvideo.trackers.text import TextDetection
from garvideo.video import Video, open_video

if TYPE_CHECKING:
    from garvideo.options import GarVideoOptions
    from garvideo.pipeline import GarVideo, PreparedClip


def _build(options: GarVideoOptions) -> GarVideo:
    """The pipeline of ``options`` (nothing loaded yet)."""
    from garvideo.options import build_garvideo  # imports the pipeline (torch): not at `garvideo --help`

    return build_garvideo(options)


def _prepare(
    gv: GarVideo, vid: Video, masks: list[Any], frame: int, quiet: bool, **kwargs: Any
) -> PreparedClip:
    """``gv.prepare`` the clip under a progress bar of the tracking pass (none when ``quiet``)."""
    with progress_bar("tracking", enabled=not quiet) as bar:
        progress = None if bar is None else bar.count
        return gv.prepare(vid, masks=masks, frame=frame, progress=progress, **kwargs)


@dataclass
class TextRequest:
    """The ``--text`` options of one command, and what SAM 3's detector found for them (filled by
    :func:`_load`: the detections, and how many objects came before the text ones)."""

    texts: Sequence[str]
    picks: Sequence[int]
    checkpoint: str | None
    threshold: float
    device: str | None
    found: list[TextDetection] = field(default_factory=list)
    offset: int = 0


def _load(
    video_path: Path,
    masks: list[Path] | None,
    resize_masks: bool,
    points: list[str] | None = None,
    boxes: list[str] | None = None,
    frame: int = 0,
    gv: GarVideo | None = None,
    text: TextRequest | None = None,
) -> tuple[Video, list[Any]]:
    """Open the clip and read the objects on ``frame``: mask files, then ``--points``, then ``--box``
    (these two segmented by SAM 2 on ``frame``: :func:`garvideo.trackers.masks_from_prompts`), then
    ``--text`` (SAM 3's detector on ``frame``; its detections are kept in ``text.found``)."""
    texts = list(text.texts) if text is not None else []
    if not (masks or points or boxes or texts):
        raise InputError(
            "masks",
            "give at least one object: --mask FILE, --points 'x,y', --box 'x0,y0,x1,y1' or --text 'the dog'",
        )
    video = open_video(video_path)
    try:
        check_frame(frame, video.num_frames)
        loaded = load_masks(masks or [], (video.height, video.width), resize=resize_masks)
        if points or boxes:
            assert gv is not None, "points and boxes are segmented by the pipeline's tracker"
            prompts = build_prompts(loaded, points or [], boxes or [], frame)
            loaded = masks_from_prompts(gv.tracker, video, prompts)
        if texts:
            assert text is not None
            found_prompts, text.found = text_objects(
                video, texts, text.picks, frame, len(loaded) + 1,
                checkpoint=text.checkpoint, threshold=text.threshold, device=text.device,
            )  # fmt: skip
            text.offset = len(loaded)
            loaded = list(loaded)
            for prompt in found_prompts:
                assert prompt.mask is not None, "a text object is the mask of its picked candidate"
                loaded.append(prompt.mask)
    except BaseException:
        video.close()
        raise
    return video, loaded


def _with_text(out: dict[str, Any], texts: TextRequest) -> dict[str, Any]:
    """The --json object, with the --text detections under "text_prompts" when there were any."""
    if texts.found:
        out["text_prompts"] = [det.to_json() for det in texts.found]
    return out


def _load_model(gv: GarVideo) -> ModelUnavailableError | None:
    """Load ``gv``'s weights; the :class:`ModelUnavailableError` is returned, not raised (``describe``
    still tracks and writes the overlay without weights)."""
    try:
        gv.load(tracker=False)
    except ModelUnavailableError as exc:
        return exc
    return None


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


# describe/ask-only options; the shared ones are in garvideo.cli._options.
IncludeOpt = Annotated[bool, typer.Option("--include-prompt-frame", help="Make the prompt frame a keyframe.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object (no streaming).")]


def describe(
    video: VideoArg,
    mask: MaskOpt = None,  # type: ignore[assignment]
    points: PointsOpt = None,
    box: BoxOpt = None,
    text: TextOpt = None,
    text_pick: TextPickOpt = None,
    text_threshold: TextThresholdOpt = 0.5,
    frame: FrameOpt = 0,
    num_frames: KOpt = 8,
    keyframes: KeyframesOpt = "uniform",
    include_prompt_frame: IncludeOpt = False,
    tracker: TrackerOpt = "auto",
    sam2_checkpoint: Sam2Opt = None,
    sam3_checkpoint: Sam3Opt = None,
    edgetam_checkpoint: EdgetamOpt = None,
    flow_option: FlowOpt = None,
    model: ModelOpt = None,
    roi_mode: RoiOpt = "official",
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    as_json: JsonOpt = False,
    overlay: Annotated[
        Path | None,
        typer.Option("--overlay", help="Write the clip with the masks and the description (.mp4)."),
    ] = None,
    max_new_tokens: NewTokOpt = None,
    resize_masks: ResizeOpt = False,
) -> None:
    """Describe the masked object(s) of a clip: track them, pick K keyframes, ask GAR.

    Objects: --mask files, then --points clicks, then --box boxes (points and boxes need sam2, sam3 or
    edgetam), then --text names (SAM 3's detector on --frame; --json lists the candidates under "text_prompts"),
    as <object0>, <object1>, … in that order. Which tracker ran, and why, is the first note (stderr).
    The description streams to the terminal as it is generated (not with --json, which prints
    {"text", "frames", "objects", "tracker", "model", "timings", "notes"}). Without model weights
    (offline, none on disk) the objects are still tracked and --overlay is written, then the
    command stops with a message saying how to get the weights (exit 2).

    Example: garvideo describe clip.mp4 --mask dog.png --frame 0 --num-frames 8 --overlay out.mp4
    """
    check_outputs(overlay=(overlay, False))
    gv = _build(
        garvideo_options(
            model=model,
            tracker=tracker,
            sam2_checkpoint=sam2_checkpoint,
            sam3_checkpoint=sam3_checkpoint,
            edgetam_checkpoint=edgetam_checkpoint,
            flow_option=flow_option,
            num_frames=num_frames,
            keyframes=keyframes,
            include_prompt_frame=include_prompt_frame,
            roi_mode=roi_mode,
            device=device,
            dtype=dtype,
            max_new_tokens=max_new_tokens,
        )
    )
    texts = TextRequest(text or [], text_pick or [], sam3_checkpoint, text_threshold, device)
    vid, masks = _load(video, mask, resize_masks, points, box, frame, gv, texts)
    if not as_json:
        print_text_notes(texts.found, texts.offset)
    check_objects(len(masks))
    with interrupt_hint("describe stopped before the description; nothing was written") as stage, vid:
        missing = _load_model(gv)
        clip = _prepare(
            gv, vid, masks, frame, as_json, encode=missing is None, track_all_frames=overlay is not None
        )
        if missing is not None:
            if not as_json:
                _print_notes(clip.notes)  # which tracker ran, and why, even without the model
            if overlay is not None:
                _write_overlay(vid, clip, overlay, None, as_json)
            raise missing
        stream = _streamer(not as_json and sys.stdout.isatty())
        result = gv.describe(clip, stream=stream)
        if overlay is not None:
            stage.text = f"writing the overlay stopped: {overlay} is incomplete; rerunning the command tracks again and rewrites it"
            _write_overlay(vid, clip, overlay, result.text, as_json)
        clip.close()
    if as_json:
        typer.echo(json.dumps(_with_text(result.to_json(), texts)))
        return
    if stream is not None:
        sys.stdout.write("\n")
    else:
        typer.echo(result.text)
    _print_notes(result.notes)


def _write_overlay(vid: Video, clip: PreparedClip, out: Path, caption: str | None, quiet: bool) -> None:
    path = render_overlay(vid, clip.masks_by_frame(), out, caption=caption or None, keyframes=clip.frames)
    if not quiet:
        typer.echo(f"overlay written to {path}", err=True)


def ask(
    video: VideoArg,
    mask: MaskOpt = None,  # type: ignore[assignment]
    question: Annotated[
        str,
        typer.Option(
            "--question",
            "-q",
            help="The question; objects are <object0>, <object1>, … (--mask, then --points, --box, --text).",
        ),
    ] = ...,  # type: ignore[assignment]  # typer: ``...`` marks the option required
    points: PointsOpt = None,
    box: BoxOpt = None,
    text: TextOpt = None,
    text_pick: TextPickOpt = None,
    text_threshold: TextThresholdOpt = 0.5,
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
    sam3_checkpoint: Sam3Opt = None,
    edgetam_checkpoint: EdgetamOpt = None,
    flow_option: FlowOpt = None,
    model: ModelOpt = None,
    roi_mode: RoiOpt = "official",
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    as_json: JsonOpt = False,
    max_new_tokens: NewTokOpt = None,
    resize_masks: ResizeOpt = False,
) -> None:
    """Answer a question about the masked object(s) of a clip, free-form or multiple choice.

    With --option, GAR answers with an option letter (printed, with --json as "letter").
    --json prints {"text", "letter", "question", "options", "frames", "objects", "tracker", "model",
    "timings", "notes"}.

    Example: garvideo ask clip.mp4 --mask a.png --mask b.png --question "What is <object0> doing to <object1>?" --option "chasing it" --option "ignoring it"
    """
    gv = _build(
        garvideo_options(
            model=model,
            tracker=tracker,
            sam2_checkpoint=sam2_checkpoint,
            sam3_checkpoint=sam3_checkpoint,
            edgetam_checkpoint=edgetam_checkpoint,
            flow_option=flow_option,
            num_frames=num_frames,
            keyframes=keyframes,
            include_prompt_frame=include_prompt_frame,
            roi_mode=roi_mode,
            device=device,
            dtype=dtype,
            max_new_tokens=max_new_tokens,
        )
    )
    texts = TextRequest(text or [], text_pick or [], sam3_checkpoint, text_threshold, device)
    vid, masks = _load(video, mask, resize_masks, points, box, frame, gv, texts)
    if not as_json:
        print_text_notes(texts.found, texts.offset)
    check_objects(len(masks))
    check_question(question, option, len(masks))
    with interrupt_hint("ask stopped before the answer; nothing was written"), vid:
        gv.load(tracker=False)  # fail on missing weights before tracking
        clip = _prepare(gv, vid, masks, frame, as_json)
        result = gv.ask(clip, question, options=option or None)
        clip.close()
    if as_json:
        typer.echo(json.dumps(_with_text(result.to_json(), texts)))
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
