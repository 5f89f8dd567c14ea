"""The ``static`` tracker: the prompt mask copied to every frame — the baseline of every number."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from garvideo.trackers.base import Prompt, Session, Tracker, VideoLike


class _StaticSession:
    def __init__(self) -> None:
        self._masks: dict[int, np.ndarray] = {}

    def step(
        self, frame_idx: int, image: np.ndarray, prompts: Sequence[Prompt]
    ) -> dict[int, tuple[np.ndarray, float]]:
        for p in prompts:
            self._masks[p.obj_id] = np.asarray(p.mask).astype(bool)
        return {o: (m, 1.0) for o, m in self._masks.items()}

    def close(self) -> None:
        self._masks.clear()


class StaticTracker(Tracker):
    """Copies each object's nearest prompt mask to every frame (presence 1 everywhere)."""

    name = "static"

    def _open_session(self, video: VideoLike, direction: str, order: Sequence[int]) -> Session:
        return _StaticSession()
