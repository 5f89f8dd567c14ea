"""A clip from a video file or a folder of frames, decoded on demand.

``open_video(path)`` accepts

* a video file: anything decord opens (mp4, avi, mkv, webm, mov, ...), with OpenCV as the fallback
  when decord is missing or cannot open the file;
* a folder of frames: JPEG/PNG/BMP/WebP files sorted by name, as DAVIS (``JPEGImages/480p/<seq>``)
  and VideoRefer-Bench lay them out. Frame ``i`` is the ``i``-th file of the sorted listing, which is
  also how VideoRefer-Bench's annotation keys index frames.

Frames come out as RGB ``uint8`` arrays of shape ``(H, W, 3)``. Only the frames asked for are decoded,
and a :class:`Video` keeps no frames in memory beyond the chunk it is decoding, so memory does not grow
with the clip length.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from garvideo.errors import InputError, PathLike

logger = logging.getLogger(__name__)

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_DECODE_CHUNK = 16  # frames decoded per decord call when streaming


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of a clip.

    Attributes:
        source: the path the clip was opened from.
        num_frames: number of frames.
        fps: frames per second (``0.0`` when unknown; a frame folder reports ``fps`` as given, default 0).
        height: frame height in pixels.
        width: frame width in pixels.
        backend: ``"decord"``, ``"opencv"`` or ``"frames"``.
    """

    source: str
    num_frames: int
    fps: float
    height: int
    width: int
    backend: str

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    @property
    def duration(self) -> float:
        """Length in seconds (``0.0`` when fps is unknown)."""
        return self.num_frames / self.fps if self.fps > 0 else 0.0


class Video(ABC):
    """A clip whose frames are decoded on demand. Use :func:`open_video` to make one."""

    def __init__(self, info: VideoInfo) -> None:
        self.info = info

    # -- metadata ---------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.info.source

    @property
    def num_frames(self) -> int:
        return self.info.num_frames

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def height(self) -> int:
        return self.info.height

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.info.size

    def __len__(self) -> int:
        return self.info.num_frames

    def __repr__(self) -> str:
        i = self.info
        return (
            f"{type(self).__name__}({i.source!r}, frames={i.num_frames}, {i.width}x{i.height}, fps={i.fps:g})"
        )

    # -- frames -----------------------------------------------------------------------------------
    def check_index(self, index: int) -> int:
        """Return ``index`` as an int, or raise :class:`InputError` when it is outside the clip."""
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise InputError(self.source, f"frame index must be an integer, got {index!r}")
        index = int(index)
        if not 0 <= index < self.num_frames:
            raise InputError(
                self.source, f"frame index {index} is out of range (the clip has {self.num_frames} frames)"
            )
        return index

    def frame(self, index: int) -> np.ndarray:
        """Decode one frame: RGB ``uint8`` array of shape ``(H, W, 3)``."""
        return self._read([self.check_index(index)])[0]

    def frames(self, indices: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(index, frame)`` pairs for ``indices`` (default: every frame), in the order given.

        Indices are checked up front; frames are decoded in small chunks, so memory stays bounded
        whatever the number of frames.
        """
        idx = list(range(self.num_frames)) if indices is None else [self.check_index(i) for i in indices]
        for start in range(0, len(idx), _DECODE_CHUNK):
            chunk = idx[start : start + _DECODE_CHUNK]
            yield from zip(chunk, self._read(chunk))

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in self.frames():
            yield frame

    @abstractmethod
    def _read(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Decode the (already checked) frames ``indices``, returned in the same order."""

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the decoder. The object must not be used afterwards."""

    def __enter__(self) -> Video:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decord_frame_to_numpy(frame: object) -> np.ndarray:
    """A frame decord returned, as a numpy array, whichever bridge is set process-wide.

    decord's bridge is a global: ``sam2``'s ``load_video_frames_from_video_file`` switches it to
    torch for the whole process, after which ``VideoReader.next()`` returns a ``torch.Tensor``
    rather than a ``decord.nd.NDArray`` (other bridges give mxnet / tensorflow tensors).
    """
    if hasattr(frame, "asnumpy"):  # decord's native NDArray (and mxnet)
        return frame.asnumpy()
    if hasattr(frame, "numpy"):  # torch / tensorflow
        return frame.numpy()
    return np.asarray(frame)


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    """Make a decoded array ``(H, W, 3) uint8``: gray → RGB, drop alpha."""
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    elif frame.shape[2] == 4:
        frame = frame[:, :, :3]
    return np.ascontiguousarray(frame, dtype=np.uint8)


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Send what native code (decord's C++ log, FFmpeg) writes to file descriptor 2 meanwhile to the
    debug log instead of the terminal, unless debug logging is on.

    Used around opening a decoder: on a file that is not a video, decord prints its own error lines
    before raising, and the caller reports the problem in one line of its own.
    """
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                logger.debug("decoder output: %s", text)


@contextlib.contextmanager
def _deferred_sigint() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) during a native teardown and raise it once that is done.

    A ``KeyboardInterrupt`` raised inside a ``__del__`` (decord's ``VideoReader`` frees its decoder
    there) is printed as "Exception ignored" and lost, so the run would go on. Outside the main thread
    (where Python delivers signals anyway) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


_IMAGE_ENDS = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND\xaeB`\x82"}


def _frame_is_truncated(path: Path) -> bool:
    """Whether a JPEG or PNG frame lacks its end: no end marker (JPEG ``FFD9``, PNG ``IEND``) at the
    end of the file, and PIL cannot decode it.

    The tail check reads a few bytes; only a file failing it is decoded (bytes after the end marker
    are allowed, so PIL decides).
    """
    end = _IMAGE_ENDS.get(path.suffix.lower())
    if end is None:
        return False
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64))
        tail = f.read().rstrip(b"\x00\r\n ")
    if tail.endswith(end):
        return False
    try:
        with Image.open(path) as im:
            im.load()  # PIL raises "image file is truncated" (ImageFile.LOAD_TRUNCATED_IMAGES is off)
    except Exception:  # noqa: BLE001 - any decoder failure means the frame is unusable
        return True
    return False


class FrameFolderVideo(Video):
    """A folder of image files, one per frame, sorted by file name."""

    def __init__(self, folder: Path, fps: float = 0.0) -> None:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS)
        if not files:
            raise InputError(folder, f"no frames in folder (expected {', '.join(FRAME_EXTENSIONS)} files)")
        sizes: dict[tuple[int, int], Path] = {}  # (width, height) -> first file of that size
        for f in files:  # image headers only: cheap, and catches mixed sizes before any work starts
            try:
                with Image.open(f) as im:
                    sizes.setdefault(im.size, f)
            except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input
                raise InputError(f, f"unreadable frame image ({exc})") from None
            if _frame_is_truncated(f):
                raise InputError(f, "truncated or corrupt frame image (the file ends before the image does)")
            if len(sizes) > 1:
                (s0, f0), (s1, f1) = list(sizes.items())[:2]
                raise InputError(
                    folder,
                    f"frames have mixed sizes: {f0.name} is {s0[0]}x{s0[1]} but {f1.name} is {s1[0]}x{s1[1]}",
                )
        (width, height) = next(iter(sizes))
        self.files = files
        super().__init__(VideoInfo(os.fspath(folder), len(files), float(fps), height, width, "frames"))

    def _read(self, indices: Sequence[int]) -> list[np.ndarray]:
        out = []
        for i in indices:
            data = cv2.imread(os.fspath(self.files[i]), cv2.IMREAD_UNCHANGED)
            if data is None:
                raise InputError(self.files[i], "unreadable frame image")
            if data.ndim == 3:
                code = cv2.COLOR_BGRA2RGB if data.shape[2] == 4 else cv2.COLOR_BGR2RGB
                data = cv2.cvtColor(data, code)
            if data.dtype != np.uint8:  # 16-bit PNG
                data = (data // 257).astype(np.uint8)
            out.append(_to_rgb(data))
        return out


class DecordVideo(Video):
    """A video file decoded with decord (seeks to the frames asked for)."""

    def __init__(self, path: Path, num_threads: int = 0) -> None:
        import decord  # only for a decord reader: it loads libav (and must come after cv2, see garvideo/__init__)

        if not logger.isEnabledFor(logging.DEBUG):  # FFmpeg's own log lines (decord's libav)
            decord.logging.set_level(decord.logging.QUIET)
        self._reader: Any = None  # decord.VideoReader (decord has no type hints); None once closed
        with _native_stderr_to_log():
            self._reader = decord.VideoReader(os.fspath(path), ctx=decord.cpu(0), num_threads=num_threads)
            n = len(self._reader)
            if n <= 0:
                raise InputError(path, "video has no frames")
            h, w = decord_frame_to_numpy(self._reader[0]).shape[:2]
            self._reader.seek(0)
        self._next = 0  # the index next() returns
        fps = float(self._reader.get_avg_fps() or 0.0)
        super().__init__(VideoInfo(os.fspath(path), n, fps, int(h), int(w), "decord"))

    def _read(self, indices: Sequence[int]) -> list[np.ndarray]:
        # Sequential reads use next(): decord's get_batch grows the process by ~80 MB per 1,000 frames
        # when streaming a long clip (measured on an 854x480 mp4), next() stays flat. A jump seeks first.
        out = []
        for i in indices:
            try:
                if i != self._next:
                    self._reader.seek_accurate(i)
                frame = decord_frame_to_numpy(self._reader.next())  # (H, W, 3) RGB uint8
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # decord raises DECORDError / StopIteration on a cut file
                self._next = -1  # position unknown: seek before the next read
                logger.debug("decord failed on frame %d of %s", i, self.source, exc_info=True)
                raise InputError(
                    self.source, f"cannot decode frame {i} (truncated or corrupt video)"
                ) from exc
            out.append(_to_rgb(frame))
            self._next = i + 1
        return out

    def close(self) -> None:
        with _deferred_sigint():  # decord frees its decoder in VideoReader.__del__
            self._reader = None


class OpenCVVideo(Video):
    """A video file decoded with OpenCV: sequential reads, seeking only when jumping backwards or far."""

    def __init__(self, path: Path) -> None:
        with _native_stderr_to_log():
            cap = cv2.VideoCapture(os.fspath(path))
        if not cap.isOpened():
            raise InputError(path, "cannot open video (not a video file, or a codec OpenCV lacks)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise InputError(path, "video has no decodable frames")
        if n <= 0:  # container without a frame count: count by decoding once
            n = 1
            while cap.grab():
                n += 1
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._cap: cv2.VideoCapture | None = cap  # None once closed
        self._pos = 0  # index of the frame the next read() returns
        h, w = first.shape[:2]
        super().__init__(VideoInfo(os.fspath(path), n, fps, int(h), int(w), "opencv"))

    def _read(self, indices: Sequence[int]) -> list[np.ndarray]:
        cap = self._cap
        if cap is None:
            raise ValueError(f"{self.source}: the video is closed")
        out = []
        for i in indices:
            if i < self._pos or i - self._pos > 32:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                self._pos = i
            while self._pos < i:
                cap.grab()
                self._pos += 1
            ok, frame = cap.read()
            if not ok or frame is None:
                raise InputError(self.source, f"cannot decode frame {i} (truncated or corrupt video)")
            self._pos += 1
            out.append(_to_rgb(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        return out

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


BACKEND_ENV = "GARVIDEO_VIDEO_BACKEND"  # the reader "auto" means: auto (decord, then OpenCV), decord, opencv


#: File starts of still images (PNG, JPEG, GIF, BMP, TIFF, WebP) — a video is never one of these.
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def _is_image_file(path: Path) -> bool:
    """Whether ``path`` holds a still image (by its first bytes, whatever its name)."""
    with open(path, "rb") as f:
        head = f.read(16)
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def open_video(path: PathLike, *, backend: str = "auto", fps: float = 0.0) -> Video:
    """Open a video file or a folder of frames.

    Args:
        path: a video file or a folder of JPEG/PNG frames (sorted by name).
        backend: ``"auto"`` (decord, then OpenCV; ``$GARVIDEO_VIDEO_BACKEND`` overrides it),
            ``"decord"`` or ``"opencv"``; ignored for folders. decord decodes ahead of a slow reader
            (tracking, model inference): about 0.7 GB more at 1280x720 than OpenCV, which stays flat
            (``bench/track_memory.py``); ``GARVIDEO_VIDEO_BACKEND=opencv`` trades that for OpenCV's reader.
        fps: frame rate to report for a frame folder (a folder has none of its own).

    Returns:
        A :class:`Video`; use it as a context manager or call ``close()``.

    Raises:
        InputError: the path does not exist, is a single image (the message says how to pass it: a
            folder with that one frame), is not a readable video or frame folder, has no frames, or
            (folders) holds frames of mixed sizes.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or folder")
    if p.is_dir():
        return FrameFolderVideo(p, fps=fps)
    if backend not in ("auto", "decord", "opencv"):
        raise InputError("backend", f"unknown video backend {backend!r} (use auto, decord or opencv)")
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "").strip() or "auto"
        if backend not in ("auto", "decord", "opencv"):
            raise InputError(BACKEND_ENV, f"unknown video backend {backend!r} (use auto, decord or opencv)")
    if p.stat().st_size == 0:
        raise InputError(p, "video file is empty")
    if _is_image_file(p):
        raise InputError(
            p,
            "is a single image, not a clip; to use it as a one-frame clip, put it in a folder of its own "
            "and pass the folder",
        )
    errors = []
    if backend in ("auto", "decord"):
        try:
            return DecordVideo(p)
        except InputError:
            raise
        except ImportError as exc:
            errors.append(f"decord unavailable: {exc}")
        except Exception as exc:
            errors.append(f"decord: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            logger.debug("decord could not open %s", p, exc_info=True)
    if backend in ("auto", "opencv"):
        try:
            return OpenCVVideo(p)
        except InputError as exc:
            errors.append(exc.problem)
    raise InputError(p, "unreadable or corrupt video (" + "; ".join(errors) + ")")
