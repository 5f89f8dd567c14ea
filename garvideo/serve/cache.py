"""The prepared-clip cache of ``garvideo serve``: :class:`garvideo.pipeline.PreparedClip` s by content
key (video hash, prompt frame, K, masks; see :func:`garvideo.serve.media.clip_key`), least recently
used first out, each evicted clip closed (video and features released) once no request holds it.

Requests are prepared in worker threads while the model thread answers earlier ones, so a clip a
waiting or running request holds (:meth:`ClipCache.acquire` / :meth:`ClipCache.put` with ``hold=True``)
is not closed when it is evicted: it is closed when its last holder lets go (:meth:`ClipCache.release`).
"""

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
        self._holds: dict[int, int] = {}  # id(clip) -> requests holding it
        self._evicted: dict[int, Any] = {}  # evicted while held: closed on the last release
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        """The clip under ``key`` (now the most recently used), or ``None``."""
        return self._get(key, hold=False)

    def acquire(self, key: str) -> Any | None:
        """As :meth:`get`, and hold the clip (not closed until :meth:`release`)."""
        return self._get(key, hold=True)

    def _get(self, key: str, hold: bool) -> Any | None:
        with self._lock:
            clip = self._clips.get(key)
            if clip is None or clip.video is None:  # a clip closed elsewhere is no use
                self._clips.pop(key, None)
                self.misses += 1
                return None
            self._clips.move_to_end(key)
            self.hits += 1
            if hold:
                self._holds[id(clip)] = self._holds.get(id(clip), 0) + 1
            return clip

    def put(self, key: str, clip: Any, *, hold: bool = False) -> None:
        """Keep ``clip`` under ``key`` (``hold``: and hold it); close the clips that no longer fit."""
        evicted = []
        with self._lock:
            if hold:
                self._holds[id(clip)] = self._holds.get(id(clip), 0) + 1
            old = self._clips.pop(key, None)
            if old is not None and old is not clip:
                evicted.append(old)
            self._clips[key] = clip
            while len(self._clips) > self.capacity:
                evicted.append(self._clips.popitem(last=False)[1])
            to_close = [c for c in evicted if not self._park(c)]
        for c in to_close:
            c.close()

    def _park(self, clip: Any) -> bool:
        """Under the lock: keep an evicted ``clip`` until its holders let go; False when nobody holds it."""
        if self._holds.get(id(clip), 0) > 0:
            self._evicted[id(clip)] = clip
            return True
        return False

    def release(self, clip: Any) -> None:
        """Let go of a clip from :meth:`acquire` / ``put(hold=True)``; an evicted one is closed by its last holder."""
        close = None
        with self._lock:
            n = self._holds.get(id(clip), 0) - 1
            if n > 0:
                self._holds[id(clip)] = n
            else:
                self._holds.pop(id(clip), None)
                close = self._evicted.pop(id(clip), None)
        if close is not None:
            close.close()

    def __len__(self) -> int:
        return len(self._clips)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "clips": len(self._clips),
                "capacity": self.capacity,
                "hits": self.hits,
                "misses": self.misses,
                "held": len(self._holds),
            }

    def clear(self) -> None:
        with self._lock:
            clips = list(self._clips.values()) + list(self._evicted.values())
            self._clips.clear()
            self._evicted.clear()
            self._holds.clear()
        for c in clips:
            c.close()
