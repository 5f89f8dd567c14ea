"""The pipeline's settings: one frozen dataclass, validated once, that every stage reads."""

from __future__ import annotations

from dataclasses import dataclass, replace
from numbers import Integral
from typing import Any

from garvideo.errors import InputError
from garvideo.keyframes import STRATEGIES
from garvideo.model.prompts import ROI_MODES
from garvideo.pipeline.budget import DEFAULT_MAX_NEW_TOKENS

__all__ = ["PipelineSettings"]


@dataclass(frozen=True)
class PipelineSettings:
    """How a clip becomes a prompt: K, keyframe strategy, the prompt frame, fps, RoI mode, new tokens.

    Validated on construction (each problem is an :class:`~garvideo.errors.InputError` naming the
    field, e.g. ``num_frames``); use :meth:`with_overrides` for a per-call variant.

    Args:
        num_frames: K, the number of keyframes (reduced when the token budget needs it); >= 1.
        keyframes: keyframe strategy, one of :data:`garvideo.keyframes.STRATEGIES`.
        include_prompt_frame: make the prompt frame one of the keyframes.
        per_second: keyframes per second for ``keyframes="fps"``; > 0.
        roi_mode: ``"official"`` or ``"corrected"`` (:data:`garvideo.model.prompts.ROI_MODES`).
        max_new_tokens: default generation length, also reserved in the token budget; >= 1.
    """

    num_frames: int = 8
    keyframes: str = "uniform"
    include_prompt_frame: bool = False
    per_second: float = 1.0
    roi_mode: str = "official"
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS

    def __post_init__(self) -> None:
        if self.keyframes not in STRATEGIES:
            raise InputError(
                "keyframes",
                f"unknown keyframe strategy {self.keyframes!r} (choose from {', '.join(STRATEGIES)})",
            )
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, Integral) or self.num_frames < 1:
            raise InputError("num_frames", f"must be a positive integer, got {self.num_frames!r}")
        if self.roi_mode not in ROI_MODES:
            raise InputError("roi_mode", f"must be one of {', '.join(ROI_MODES)}, got {self.roi_mode!r}")
        if self.max_new_tokens < 1:
            raise InputError("max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        if not self.per_second > 0:
            raise InputError("per_second", f"must be positive, got {self.per_second}")
        object.__setattr__(self, "num_frames", int(self.num_frames))
        object.__setattr__(self, "include_prompt_frame", bool(self.include_prompt_frame))
        object.__setattr__(self, "per_second", float(self.per_second))
        object.__setattr__(self, "max_new_tokens", int(self.max_new_tokens))

    def with_overrides(self, **overrides: Any) -> PipelineSettings:
        """These settings with the given fields replaced (``None`` values are ignored); validated again."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self
