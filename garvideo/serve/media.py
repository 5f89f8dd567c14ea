"""What a request points at, checked at the boundary: the video (``file://`` under an allowed root, a
``data:`` URL, or a frame folder under the root) and the objects' masks.

Every problem is an :class:`garvideo.serve.schema.ApiError` with the status the client should see:
403 for a path outside the allowed roots (``..`` or a link leading out included), 413 for an upload
over the limit, 400 for everything else (unreadable video, bad mask, size mismatch, ...).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import numpy as np

from garvideo.errors import InputError
from garvideo.masks import load_mask, rle_decode
from garvideo.serve.schema import ApiError, MaskSpec
from garvideo.video import FRAME_EXTENSIONS, open_video

__all__ = ["MediaStore", "ObjectSpec", "VideoSource", "clip_key", "decode_masks"]

logger = logging.getLogger(__name__)

# File suffix of an upload by its MIME type (decord and OpenCV sniff the container; the suffix only
# helps the OpenCV fallback).
_VIDEO_SUFFIX = {
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "video/x-msvideo": ".avi",
    "video/x-matroska": ".mkv",
    "video/mpeg": ".mpg",
}
_MEMO = 256  # content hashes and video facts remembered
_CHUNK = 1 << 20


@dataclass(frozen=True)
class VideoSource:
    """A checked video: the path to open, its content hash and its facts."""

    path: Path
    digest: str
    num_frames: int
    height: int
    width: int


@dataclass
class ObjectSpec:
    """One object on the prompt frame: a ``(H, W)`` bool mask, or SAM 2 points (with labels) or a box."""

    mask: np.ndarray | None = None
    points: np.ndarray | None = None  # (N, 2) float pixel (x, y)
    labels: np.ndarray | None = None  # (N,) int, 1 positive / 0 negative
    box: tuple[float, float, float, float] | None = None
    text: str | None = None  # named in words: replaced by its mask before the job is made
    pick: int = 0  # the candidate of ``text`` used, by rank

    @property
    def kind(self) -> str:
        if self.text is not None:
            return "text"
        return "mask" if self.mask is not None else "points" if self.points is not None else "box"


class MediaStore:
    """Resolves ``video_url`` s: checks paths against the allowed roots, spools ``data:`` uploads to
    files named by their content hash (at most ``max_files`` kept), and remembers content hashes and
    frame counts / sizes so repeated requests on one clip do not reread it.

    Thread-safe (requests are parsed in worker threads).
    """

    def __init__(
        self,
        allowed_roots: Sequence[os.PathLike[str] | str],
        upload_dir: Path,
        max_upload_bytes: int,
        max_files: int,
    ) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in allowed_roots]
        self.upload_dir = upload_dir
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_files = max(1, int(max_files))
        self._lock = threading.Lock()
        self._digests: OrderedDict[tuple, str] = OrderedDict()
        self._facts: OrderedDict[str, tuple[int, int, int]] = OrderedDict()
        self._uploads: OrderedDict[str, Path] = OrderedDict()

    # -- the URL ---------------------------------------------------------------------------------------
    def resolve(self, url: str) -> VideoSource:
        """The video a ``video_url`` names, checked and hashed."""
        if not isinstance(url, str) or not url:
            raise ApiError(400, "video_url.url is empty", "video_url")
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme == "data":
            path, digest = self._upload(url)
        elif scheme == "file":
            path = self._local(url)
            digest = self._hash_path(path)
        else:
            raise ApiError(
                400,
                "video_url must be a file:// URL under the server's --allowed-root or a data:video/...;base64 "
                f"URL (got a {scheme or 'schemeless'} URL; the server fetches nothing from the network)",
                "video_url",
            )
        n, h, w = self._video_facts(path, digest)
        return VideoSource(path, digest, n, h, w)

    def _local(self, url: str) -> Path:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ApiError(400, f"file:// URL with a host ({parts.netloc!r}) is not supported", "video_url")
        raw = unquote(parts.path)
        if not self.roots:
            raise ApiError(
                403,
                "file:// URLs are disabled: the server was started without --allowed-root (send the video as a "
                "data:video/mp4;base64 URL, or restart the server with --allowed-root DIR)",
                "video_url",
                "path_not_allowed",
            )
        if not raw.startswith("/") or ".." in PurePosixPath(raw).parts:
            raise ApiError(
                403,
                "file:// paths must be absolute and may not contain '..'",
                "video_url",
                "path_not_allowed",
            )
        real = Path(os.path.realpath(raw))
        root = self._root_of(real)
        if root is None:
            raise ApiError(
                403, f"{raw} is outside the server's allowed roots", "video_url", "path_not_allowed"
            )
        if not real.exists():
            raise ApiError(400, f"{raw}: no such file or folder", "video_url")
        if real.is_dir():  # a frame folder: no frame may be a link leading out of the root
            for entry in real.iterdir():
                if self._root_of(Path(os.path.realpath(entry))) is None:
                    raise ApiError(
                        403,
                        f"{raw}: {entry.name} links outside the allowed roots",
                        "video_url",
                        "path_not_allowed",
                    )
        return real

    def _root_of(self, real: Path) -> Path | None:
        for root in self.roots:
            if real == root or real.is_relative_to(root):
                return root
        return None

    def _upload(self, url: str) -> tuple[Path, str]:
        header, sep, payload = url.partition(",")
        if not sep or not header.lower().endswith(";base64"):
            raise ApiError(400, "a data URL must be data:video/<type>;base64,<data>", "video_url")
        mime = header[5:].split(";", 1)[0].strip().lower()
        if not mime.startswith("video/"):
            raise ApiError(
                400, f"a data URL must hold a video (data:video/...), got {mime or 'no type'}", "video_url"
            )
        if len(payload) * 3 // 4 > self.max_upload_bytes:
            raise too_large(self.max_upload_bytes)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "the data URL is not valid base64", "video_url") from None
        if not data:
            raise ApiError(400, "the data URL holds no data", "video_url")
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            path = self._uploads.get(digest)
            if path is not None and path.exists():
                self._uploads.move_to_end(digest)
                return path, digest
            path = self.upload_dir / f"{digest}{_VIDEO_SUFFIX.get(mime, '.mp4')}"
            tmp = path.with_suffix(path.suffix + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)
            self._uploads[digest] = path
            # An evicted upload may still be open in a cached clip: on POSIX an open file outlives unlink.
            while len(self._uploads) > self.max_files:
                _, old = self._uploads.popitem(last=False)
                old.unlink(missing_ok=True)
        return path, digest

    # -- hashes and facts --------------------------------------------------------------------------------
    def _hash_path(self, path: Path) -> str:

        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS)
        else:
            files = [path]
        stats = tuple(
            (os.fspath(p), st.st_size, st.st_mtime_ns, st.st_ino) for p in files for st in [p.stat()]
        )
        key = (os.fspath(path), stats)
        with self._lock:
            if key in self._digests:
                self._digests.move_to_end(key)
                return self._digests[key]
        h = hashlib.sha256()  # a file: its bytes (as for an upload); a folder: names and bytes
        for p in files:
            if path.is_dir():
                h.update(p.name.encode() + b"\0")
            with open(p, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        digest = h.hexdigest()
        with self._lock:
            self._digests[key] = digest
            while len(self._digests) > _MEMO:
                self._digests.popitem(last=False)
        return digest

    def _video_facts(self, path: Path, digest: str) -> tuple[int, int, int]:
        with self._lock:
            if digest in self._facts:
                self._facts.move_to_end(digest)
                return self._facts[digest]

        try:
            with open_video(path) as video:
                facts = (int(video.num_frames), int(video.height), int(video.width))
        except InputError as exc:
            raise ApiError(400, f"bad video: {exc.problem}", "video_url", "bad_video") from None
        with self._lock:
            self._facts[digest] = facts
            while len(self._facts) > _MEMO:
                self._facts.popitem(last=False)
        return facts

    def close(self) -> None:
        with self._lock:
            for path in self._uploads.values():
                path.unlink(missing_ok=True)
            self._uploads.clear()


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request is larger than the server's limit of {limit / 2**20:g} MB (--max-upload-mb)",
        None,
        "request_too_large",
    )


# ----------------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------------
def decode_masks(
    specs: Sequence[MaskSpec], video: VideoSource, max_objects: int
) -> tuple[int, list[ObjectSpec]]:
    """The objects of ``extra_body.masks`` on their (one) prompt frame.

    A PNG with several ids (a palette or id map) is several objects, in id order, as the CLI reads it
    (:func:`garvideo.masks.load_mask`).
    """
    if not specs:
        raise ApiError(400, "give the object(s) in extra_body.masks (rle, png, points, box or text)", "masks")
    frames = {s.frame for s in specs}
    if len(frames) > 1:
        raise ApiError(400, f"all masks must be on one frame, got frames {sorted(frames)}", "masks")
    frame = frames.pop()
    if frame >= video.num_frames:
        raise ApiError(
            400, f"frame {frame} is out of range: the video has {video.num_frames} frames", "masks[0].frame"
        )
    size = (video.height, video.width)
    objects: list[ObjectSpec] = []
    for i, spec in enumerate(specs):
        kinds = spec.kinds
        if len(kinds) != 1:
            raise ApiError(
                400,
                f"masks[{i}] must have exactly one of rle, png, points, box, text (got {kinds or 'none'})",
                f"masks[{i}]",
            )
        kind = kinds[0]
        param = f"masks[{i}].{kind}"
        if spec.pick is not None and kind != "text":
            raise ApiError(
                400, f"masks[{i}].pick chooses a text candidate: give it with text", f"masks[{i}].pick"
            )
        if kind == "rle":
            try:
                m = rle_decode(spec.rle, source=param, size=size)  # type: ignore[arg-type]
            except InputError as exc:
                raise ApiError(400, str(exc), param, "bad_mask") from None
            objects.append(ObjectSpec(mask=_non_empty(m, param)))
        elif kind == "png":
            objects.extend(ObjectSpec(mask=m) for m in _png_masks(spec.png, size, param))  # type: ignore[arg-type]
        elif kind == "text":
            if not spec.text.strip():  # type: ignore[union-attr]
                raise ApiError(400, f"{param} is empty", param)
            objects.append(ObjectSpec(text=spec.text, pick=int(spec.pick or 0)))
        elif kind == "points":
            objects.append(_points(spec.points, size, param))  # type: ignore[arg-type]
        else:
            objects.append(_box(spec.box, size, param))  # type: ignore[arg-type]
    if len(objects) > max_objects:
        raise ApiError(
            400, f"expected 1 to {max_objects} objects, got {len(objects)}", "masks", "too_many_objects"
        )
    return frame, objects


def _non_empty(m: np.ndarray, param: str) -> np.ndarray:
    if not m.any():
        raise ApiError(400, f"{param}: mask is empty (no pixel set)", param, "bad_mask")
    return m


def _png_masks(data: str, size: tuple[int, int], param: str) -> list[np.ndarray]:

    payload = data.partition(",")[2] if data.startswith("data:") else data
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{param}: not valid base64", param, "bad_mask") from None
    with tempfile.TemporaryDirectory(prefix="garvideo-mask-") as tmp:
        path = Path(tmp) / "mask.png"
        path.write_bytes(raw)
        try:
            return load_mask(path, size)
        except InputError as exc:
            raise ApiError(400, f"{param}: {exc.problem}", param, "bad_mask") from None


def _points(points: list[list[float]], size: tuple[int, int], param: str) -> ObjectSpec:
    h, w = size
    if not points:
        raise ApiError(400, f"{param}: give at least one point [x, y, label]", param)
    xy, labels = [], []
    for p in points:
        if len(p) not in (2, 3):
            raise ApiError(400, f"{param}: each point is [x, y] or [x, y, label], got {p}", param)
        x, y = float(p[0]), float(p[1])
        label = int(p[2]) if len(p) == 3 else 1
        if not (0 <= x < w and 0 <= y < h):
            raise ApiError(400, f"{param}: point ({x:g}, {y:g}) is outside the {w}x{h} frame", param)
        if label not in (0, 1) or (len(p) == 3 and float(p[2]) != label):
            raise ApiError(
                400, f"{param}: a point's label is 1 (positive) or 0 (negative), got {p[2]}", param
            )
        xy.append((x, y))
        labels.append(label)
    return ObjectSpec(points=np.asarray(xy, dtype=np.float32), labels=np.asarray(labels, dtype=np.int64))


def _box(box: list[float], size: tuple[int, int], param: str) -> ObjectSpec:
    h, w = size
    if len(box) != 4:
        raise ApiError(400, f"{param}: a box is [x0, y0, x1, y1], got {box}", param)
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ApiError(400, f"{param}: box {box} is empty or outside the {w}x{h} frame", param)
    return ObjectSpec(box=(x0, y0, x1, y1))


def clip_key(video: VideoSource, frame: int, objects: Sequence[ObjectSpec], num_frames: int) -> str:
    """The prepared-clip cache key: the video's content hash, the prompt frame, K and the objects."""
    h = hashlib.sha256(f"{video.digest}|{frame}|{num_frames}".encode())
    for o in objects:
        h.update(o.kind.encode())
        if o.mask is not None:
            h.update(str(o.mask.shape).encode() + np.packbits(o.mask).tobytes())
        elif o.points is not None:
            h.update(o.points.tobytes() + o.labels.tobytes())  # type: ignore[union-attr]
        else:
            h.update(np.asarray(o.box, dtype=np.float64).tobytes())
    return h.hexdigest()
