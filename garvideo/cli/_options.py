"""Options shared by several commands, defined once (typer reads each command's options from its
signature, so commands list them as parameters annotated with these aliases), and
:func:`garvideo_options`, the one place the model/tracker options become a
:class:`~garvideo.options.GarVideoOptions`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from garvideo.cli._checks import check_model_options
from garvideo.options import GarVideoOptions
from garvideo.pipeline.settings import PipelineSettings
from garvideo.trackers import parse_flow_options

VideoArg = Annotated[Path, typer.Argument(help="Video file or folder of frames.", show_default=False)]
MaskOpt = Annotated[
    list[Path],
    typer.Option(
        "--mask",
        "-m",
        help="Mask of the object(s) on --frame (PNG id map / 0-255, .npy, COCO RLE .json); repeat for more "
        "objects. A file with several ids gives several objects, in id order.",
        show_default=False,
    ),
]
PointsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--points",
        help="One object by clicks on --frame: 'x,y[,label];x,y[,label]' in pixels, label 1 positive "
        "(default) or 0 negative; repeat for more objects. Needs sam2, sam3 or edgetam. Objects are numbered --mask "
        "objects first, then --points, then --box, each in the order given.",
        show_default=False,
    ),
]
BoxOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--box",
        help="One object by its box on --frame: 'x0,y0,x1,y1' in pixels; repeat for more objects. Needs sam2, sam3 or edgetam.",
        show_default=False,
    ),
]
FrameOpt = Annotated[int, typer.Option("--frame", "-f", min=0, help="Frame the masks belong to (0-based).")]
ResizeOpt = Annotated[
    bool, typer.Option("--resize-masks", help="Resize masks to the video size instead of failing.")
]
TrackerOpt = Annotated[
    str,
    typer.Option(
        "--tracker",
        "-t",
        help="Mask propagation: auto (SAM 2: --sam2-checkpoint, $GARVIDEO_SAM2_CHECKPOINT, the hub cache, "
        "else a download of SAM 2.1 when online; flow when offline), sam2, sam3 (--sam3-checkpoint), "
        "edgetam (--edgetam-checkpoint), flow or static.",
    ),
]
FlowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--flow-option",
        help="A setting of the flow tracker, KEY=VALUE; repeat for more (e.g. work_size=640: faster; "
        "motion=0: no motion term). Keys: the fields of garvideo.trackers.FlowOptions. Used when the "
        "flow tracker runs (--tracker flow, or auto without SAM 2).",
        show_default=False,
    ),
]
Sam2Opt = Annotated[
    str | None,
    typer.Option(
        "--sam2-checkpoint", help="SAM 2.1 .pt file or hub id (default: $GARVIDEO_SAM2_CHECKPOINT)."
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="GAR checkpoint: hub id or local folder (default: $GARVIDEO_MODEL, else HaochenWang/GAR-1B).",
    ),
]
KOpt = Annotated[
    int,
    typer.Option("--num-frames", "-k", min=1, help="Keyframes K per clip (reduced if the context needs it)."),
]
KeyframesOpt = Annotated[
    str, typer.Option("--keyframes", help="Keyframe strategy: uniform, videorefer, visible or fps.")
]
RoiOpt = Annotated[
    str,
    typer.Option(
        "--roi-mode", help="RoI replay arithmetic: official (as the released checkpoints) or corrected."
    ),
]
NewTokOpt = Annotated[
    int | None,
    typer.Option("--max-new-tokens", min=1, help="Most tokens generated per answer (default: 512)."),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="cpu, cuda, cuda:1, ... (default: CUDA when available; cuda:LOCAL_RANK under torchrun).",
    ),
]
DtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        help="auto, float32 or bfloat16 (default: $GARVIDEO_DTYPE, else auto: bf16 on CUDA and on CPUs with "
        "native bf16, else float32).",
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard", help="Run rank I of N (0-based), e.g. 0/4; default: torchrun's RANK/WORLD_SIZE, else all."
    ),
]
PrefetchOpt = Annotated[
    int,
    typer.Option(
        "--prefetch",
        min=0,
        help="Clips prepared ahead (decode, track) in a background thread while the model runs; 0: serial.",
    ),
]
BatchSizeOpt = Annotated[
    int, typer.Option("--batch-size", "-b", min=1, help="Questions answered together (batched generation).")
]

SkipFailedOpt = Annotated[
    bool,
    typer.Option(
        "--skip-failed",
        help="Keep records that failed in an earlier run (by default a rerun retries them).",
    ),
]
RetryErrorsOpt = Annotated[
    bool,
    typer.Option("--retry-errors", hidden=True, help="Old flag: retrying failed records is the default."),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace what --out holds (and its settings) with a fresh run, whatever its settings were.",
    ),
]
TextOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--text",
        help="One object named in words on --frame, e.g. 'the red car' (SAM 3's concept detector finds it; "
        "its mask is then tracked by any tracker); repeat for more objects. Objects from --text come after "
        "--mask, --points and --box ones.",
        show_default=False,
    ),
]
TextPickOpt = Annotated[
    list[int] | None,
    typer.Option(
        "--text-pick",
        min=0,
        help="Which candidate of each --text to use, by rank (0 = best, the default); one per --text, in order.",
        show_default=False,
    ),
]
TextThresholdOpt = Annotated[
    float,
    typer.Option("--text-threshold", min=0.0, max=1.0, help="Score a --text candidate needs (0..1)."),
]
Sam3Opt = Annotated[
    str | None,
    typer.Option(
        "--sam3-checkpoint",
        help="SAM 3 folder or hub id, for --text and --tracker sam3 (default: $GARVIDEO_SAM3_CHECKPOINT, "
        "else facebook/sam3: gated, accept the licence on its hub page and `hf auth login`).",
    ),
]
EdgetamOpt = Annotated[
    str | None,
    typer.Option(
        "--edgetam-checkpoint",
        help="EdgeTAM folder or hub id for --tracker edgetam (default: $GARVIDEO_EDGETAM_CHECKPOINT, "
        "else yonigozlan/EdgeTAM-hf).",
    ),
]


def garvideo_options(
    *,
    model: str | None = None,
    tracker: str = "auto",
    sam2_checkpoint: str | Path | None = None,
    sam3_checkpoint: str | Path | None = None,
    edgetam_checkpoint: str | Path | None = None,
    flow_option: Sequence[str] | None = None,
    num_frames: int = 8,
    keyframes: str = "uniform",
    include_prompt_frame: bool = False,
    roi_mode: str = "official",
    device: str | None = None,
    dtype: str | None = None,
    max_new_tokens: int | None = None,
) -> GarVideoOptions:
    """The :class:`~garvideo.options.GarVideoOptions` of a command's model/tracker options (the
    parameters of the same names, :data:`ModelOpt`, :data:`TrackerOpt`, ...), checked before any heavy
    work: the tracker name, the device, the dtype, ``--flow-option`` items and the pipeline settings.

    Args:
        model, tracker, sam2_checkpoint, sam3_checkpoint, edgetam_checkpoint, device, dtype: as typed.
        flow_option: the ``--flow-option KEY=VALUE`` items (parsed by
            :func:`garvideo.trackers.parse_flow_options`).
        num_frames, keyframes, include_prompt_frame, roi_mode: the pipeline settings.
        max_new_tokens: ``None``: the pipeline's default (512).

    Returns:
        The options; build the pipeline with :func:`garvideo.options.build_garvideo`.

    Raises:
        InputError: a bad option, named by its library field (the CLI prints its flag).
    """
    check_model_options(tracker, device, dtype)
    flow_options = parse_flow_options(flow_option or [])
    settings = PipelineSettings(
        num_frames=num_frames,
        keyframes=keyframes,
        include_prompt_frame=include_prompt_frame,
        roi_mode=roi_mode,
    ).with_overrides(max_new_tokens=max_new_tokens)
    return GarVideoOptions(
        model=model,
        tracker=tracker,
        sam2_checkpoint=None if sam2_checkpoint is None else str(sam2_checkpoint),
        sam3_checkpoint=None if sam3_checkpoint is None else str(sam3_checkpoint),
        edgetam_checkpoint=None if edgetam_checkpoint is None else str(edgetam_checkpoint),
        flow_options=flow_options,
        device=device,
        dtype=dtype,
        settings=settings,
    )
