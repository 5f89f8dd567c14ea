"""The ``flow`` backend: :class:`FlowTracker` (a :class:`~garvideo.trackers.base.Tracker` whose sessions are
:class:`~garvideo.trackers.flow.session.FlowSession`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from garvideo.errors import InputError
from garvideo.trackers.base import Session, Tracker
from garvideo.trackers.flow.options import FlowOptions
from garvideo.trackers.flow.session import FlowSession
from garvideo.trackers.types import VideoLike


class FlowTracker(Tracker):
    """Weight-free tracker: DIS optical flow + colour appearance models + guided-filter refinement.

    Args:
        work_size: long side, in pixels, of the working resolution (flow and fusion).
        preset: DIS preset, ``"ultrafast"``, ``"fast"`` or ``"medium"``.
        consistency, appearance, refine: switch the forward/backward check, the colour models and
            the boundary refinement (for ablations).
        threads: OpenCV thread count (``None``: OpenCV's default).
        **options: any other :class:`FlowOptions` field.
    """

    name = "flow"
    thread_library = "opencv"

    def __init__(self, threads: int | None = None, **options: object) -> None:
        unknown = set(options) - set(FlowOptions.__dataclass_fields__)
        if unknown:
            raise InputError("flow_options", f"unknown option(s): {', '.join(sorted(unknown))}")
        self.options = FlowOptions(**options)  # type: ignore[arg-type]  # names checked above, values by FlowOptions
        if threads is not None:
            if threads < 1:
                raise InputError("threads", f"must be at least 1, got {threads}")
            self.threads = int(threads)

    def _open_session(self, video: VideoLike, direction: str, order: Sequence[int]) -> Session:
        return FlowSession(self.options, int(video.height), int(video.width))

    def describe(self) -> dict[str, object]:
        return dict(dataclasses.asdict(self.options))
