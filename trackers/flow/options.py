"""The flow tracker's settings: :class:`FlowOptions` (frozen, checked once) and :func:`parse_flow_options`
(``KEY=VALUE`` items, as the command line and batch files give them). No OpenCV here: the names of the DIS
presets are mapped to OpenCV's constants where the flow is computed (:mod:`garvideo.trackers.flow.session`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from garvideo.errors import InputError

#: The DIS optical-flow presets ``FlowOptions.preset`` takes (OpenCV's ``DISOPTICAL_FLOW_PRESET_*``).
PRESETS = ("ultrafast", "fast", "medium")


@dataclass(frozen=True)
class FlowOptions:
    """Settings of the flow tracker (defaults are the ones measured in ``bench/track.py``).

    Attributes:
        work_size: long side, in pixels, of the working resolution (flow, fusion, appearance); on
            the ten shared DAVIS-2016 sequences (854x480) 768 is as good as full resolution and
            better than 640 (``bench/track.py --loo work_size=640,768,854``, measured before the
            motion term was added).
        preset: DIS optical-flow preset (``ultrafast``, ``fast``, ``medium``).
        consistency, appearance, refine, redetect, adaptive: switch the forward/backward check, the
            colour models, the guided-filter boundary refinement, the occlusion handling, the
            per-frame weighting of the colour models by their agreement with the flow (off by
            default: it helped only on the sequences it was tuned on, ``bench/track.py``).
        fine_flow: flow on the crop around the objects at the finest affordable scale (else on the
            whole frame at DIS's default quarter resolution).
        flow_budget: cost of that crop flow, in units of whole-frame quarter-resolution flow.
        global_bg: half of the background colour model from the whole frame (else a ring only).
        bilateral: weight of the bilateral colour-and-position log-odds (0: off).
        bilateral_cell: bilateral grid cell, as a fraction of sqrt(object area).
        fill_holes: fill holes in the propagated mask (off by default: the gaps between legs or
            between an arm and the body are real, and filling them carried ground into the mask).
        motion: weight of the motion log-odds (0: off); the log-odds lie in [-2, ``motion_positive``].
        motion_positive: most a pixel moving like the object adds (log-odds). Small: many other
            things move (water, spray, other people), while moving like the background is strong
            evidence (``bench/track.py --loo "motion=0.5,1,1.5;motion_positive=0.25,0.5,0.75"``).
        motion_reliable: no motion evidence where the flow fails the forward/backward check (off:
            for ablations only).
        anchor_weight: share of the prompt frame's colour histograms in the appearance model.
        update_rate: how fast the running histograms follow the recent frames.
        flow_weight, appearance_weight: weights of the warped mask and of the colour log-odds.
        band: search band and background ring width, as a fraction of sqrt(object area).
        refine_radius, refine_eps: guided-filter window radius (full-resolution pixels) and epsilon.
        absent_fraction: below this fraction of its typical area the object is reported absent.
        redetect_logit: colour log-odds a pixel needs to be taken as the object by appearance alone.
        redetect_area: smallest re-detected component, as a fraction of the typical area.
        redetect_frames: how long a lost object is looked for in its predicted box.
        occluded_fraction: below this fraction of its typical area the object is taken as partly
            occluded: its velocity is frozen, components of the mask that do not look like the
            object are dropped, and it is re-seeded and grown by appearance.
        recover_frames: how many frames after the area recovers the re-seeding and growing go on.
    """

    work_size: int = 768
    preset: str = "ultrafast"
    consistency: bool = True
    appearance: bool = True
    refine: bool = True
    anchor_weight: float = 0.5
    update_rate: float = 0.3
    flow_weight: float = 1.0
    appearance_weight: float = 0.3
    band: float = 0.15
    refine_radius: int = 4
    refine_eps: float = 1e-3
    absent_fraction: float = 0.02
    redetect: bool = True
    redetect_logit: float = 1.0
    redetect_area: float = 0.05
    redetect_frames: int = 60
    occluded_fraction: float = 0.7
    recover_frames: int = 8
    adaptive: bool = False
    fine_flow: bool = True
    flow_budget: float = 2.0
    global_bg: bool = True
    bilateral: float = 0.5
    bilateral_cell: float = 0.125
    fill_holes: bool = False
    motion: float = 1.0
    motion_positive: float = 0.5
    motion_reliable: bool = True

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise InputError("preset", f"must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.work_size < 32:
            raise InputError("work_size", f"must be at least 32, got {self.work_size}")


def parse_flow_options(items: Sequence[str]) -> dict[str, object]:
    """``["work_size=640", "motion=0", "refine=false"]`` -> ``{"work_size": 640, "motion": 0.0, "refine": False}``.

    Each item is ``KEY=VALUE`` with KEY a :class:`FlowOptions` field; VALUE is read as that field's type
    (bool: true/false, yes/no, on/off, 1/0).

    Raises:
        InputError: (named ``flow_options``) an item without ``=``, an unknown key, or a value of the
            wrong type.
    """
    defaults = FlowOptions()
    fields = [f.name for f in dataclasses.fields(FlowOptions)]
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or not raw:
            raise InputError("flow_options", f"expected KEY=VALUE, got {item!r}")
        if key not in fields:
            raise InputError("flow_options", f"unknown flow option {key!r} (options: {', '.join(fields)})")
        kind = type(getattr(defaults, key))
        try:
            if kind is bool:
                low = raw.lower()
                if low not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
                    raise ValueError(raw)
                out[key] = low in ("true", "yes", "on", "1")
            else:
                out[key] = kind(raw)
        except ValueError:
            raise InputError("flow_options", f"{key} takes a {kind.__name__}, got {raw!r}") from None
    FlowOptions(**out)  # type: ignore[arg-type]  # the value checks, now rather than at tracking time
    return out
