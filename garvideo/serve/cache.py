"""The prepared-clip cache of ``garvideo serve``: :class:`garvideo.pipeline.PreparedClip` s by content
key (video hash, prompt frame, K, masks; see :func:`garvideo.serve.media.clip_key`), least recently
used first out, each evicted clip closed (video and features released)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["ClipCache"]


class ClipCache:
    """At most ``capacity`` prepared clips, least recently used evicted first.

    Args:
        capacity: clips kept (each holds its keyframe features and up to two prompt-prefix KV caches).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._clips: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        """The clip under ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            clip = self._clips.get(key)
            if clip is None or clip.video is None:  # a clip closed elsewhere is no use
                self._clips.pop(key, None)
                self.misses += 1
                return None
            self._clips.move_to_end(key)
            self.hits += 1
            return clip

    def put(self, key: str, clip: Any) -> None:
        """Keep ``clip`` under ``key``; close the clips that no longer fit."""
        evicted = []
        with self._lock:
            old = self._clips.pop(key, None)
            if old is not None and old is not clip:
                evicted.append(old)
            self._clips[key] = clip
            while len(self._clips) > self.capacity:
                evicted.append(self._clips.popitem(last=False)[1])
        for c in evicted:
            c.close()

    def __len__(self) -> int:
        return len(self._clips)

    def stats(self) -> dict[str, int]:
        return {
            "clips": len(self._clips),
            "capacity": self.capacity,
            "hits": self.hits,
            "misses": self.misses,
        }

    def clear(self) -> None:
        with self._lock:
            clips = list(self._clips.values())
            self._clips.clear()
        for c in clips:
            c.close()
