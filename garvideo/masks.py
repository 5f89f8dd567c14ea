"""Mask files in and out, checked at the boundary.

Formats read by :func:`load_mask`:

* **PNG** (or any image PIL reads):
    - palette (mode ``P``) or id images: each distinct nonzero value is one object, in ascending order
      (the DAVIS-2017 / SA-V convention);
    - mode ``L``/``I``: one object when the image has a single nonzero value, or when any value is
      above :data:`MAX_ID_VALUE` (then it is a soft matte, binarised at ``>= 128`` for 8-bit images);
      otherwise an id map as above;
    - mode ``1``: one object;
    - RGB(A): one object per distinct non-black colour (alpha is ignored).
* **.npy**: a 2-D array read like an ``L`` image (``bool`` → one object, float → ``> 0.5``), or a
  3-D ``(N, H, W)`` array of N objects.
* **COCO RLE JSON** (``.json``): ``{"size": [h, w], "counts": str | list}``, a ``{"segmentation": …}``
  wrapper, or a list of either (several objects). Decoded with pycocotools.

Every problem raises :class:`garvideo.errors.InputError` naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from garvideo.errors import InputError, PathLike

MAX_ID_VALUE = 32
"""Largest pixel value read as an object id in an ``L``/``I`` image; larger values mean a soft matte."""

MAX_OBJECTS_PER_FILE = 255
"""Most objects one mask file may hold (an 8-bit id map's ids); more means the file is not a mask."""

Box = tuple[int, int, int, int]


# ----------------------------------------------------------------------------------------------------
# COCO RLE
# ----------------------------------------------------------------------------------------------------
def rle_decode(
    rle: Mapping[str, Any], source: PathLike | None = None, *, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode one COCO RLE into a bool mask ``(H, W)``.

    Args:
        rle: ``{"size": [height, width], "counts": str | bytes | list[int]}`` — compressed (string)
            or uncompressed (list) counts, column-major as in COCO.
        source: where the RLE came from, for the error message.
        size: ``(height, width)`` the mask must have (the video's frame size); ``None`` skips the check.

    Raises:
        InputError: the RLE is malformed (missing keys, bad size, counts that do not sum to h*w), or its
            size differs from ``size``.
    """
    from pycocotools import mask as mask_utils  # only for COCO RLE (it warns on import under NumPy 2)

    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise InputError(source, "malformed COCO RLE (expected a dict with 'size' and 'counts')")
    rle_size = rle["size"]
    if (
        not isinstance(rle_size, (list, tuple))
        or len(rle_size) != 2
        or not all(isinstance(v, (int, np.integer)) and v > 0 for v in rle_size)
    ):
        raise InputError(source, f"malformed COCO RLE: size must be [height, width], got {rle_size!r}")
    h, w = int(rle_size[0]), int(rle_size[1])
    counts = rle["counts"]
    try:
        if isinstance(counts, list):
            if not all(isinstance(c, (int, np.integer)) and c >= 0 for c in counts) or sum(counts) != h * w:
                raise ValueError(f"uncompressed counts must be non-negative and sum to {h * w}")
            obj = mask_utils.frPyObjects({"size": [h, w], "counts": list(map(int, counts))}, h, w)
        elif isinstance(counts, (str, bytes)):
            obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
            runs = rle_string_counts(obj["counts"])
            if any(c < 0 for c in runs):
                raise ValueError("counts hold a negative run length")
            if sum(runs) != h * w:
                raise ValueError(f"counts cover {sum(runs)} pixels but size {h}x{w} has {h * w}")
        else:
            raise ValueError(f"counts must be a string or a list, got {type(counts).__name__}")  # noqa: TRY004
        m = mask_utils.decode(obj)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pycocotools raises bare exceptions
        raise InputError(source, f"malformed COCO RLE ({exc})") from None
    if size is not None and (h, w) != (int(size[0]), int(size[1])):
        raise InputError(source, f"mask is {w}x{h} but the video frames are {int(size[1])}x{int(size[0])}")
    return m.astype(bool)


def rle_string_counts(counts: str | bytes) -> list[int]:
    """The run lengths of COCO's compressed (string) RLE counts.

    The format, as pycocotools' ``maskApi.c`` (``rleFrString``) defines it: each run length is written
    in 5-bit groups, least significant first, one character per group (``chr(48 + group)``); bit
    ``0x20`` of a character says another group follows, and bit ``0x10`` of the last group is the sign.
    From the third run on, the value stored is the difference to the run two places back.

    Raises:
        ValueError: a character outside the format, or counts that end in the middle of a run.
    """
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    pos = 0
    while pos < len(data):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(data):
                raise ValueError("counts end in the middle of a run length")
            c = data[pos] - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {chr(data[pos])!r} is not valid in RLE counts")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode a 2-D mask as a COCO RLE with string counts: ``{"size": [h, w], "counts": str}``."""
    from pycocotools import mask as mask_utils  # only for COCO RLE (it warns on import under NumPy 2)

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"rle_encode expects a 2-D mask, got shape {m.shape}")
    enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": enc["counts"].decode("ascii")}


# ----------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------
def _split_ids(values: np.ndarray, source: Path) -> list[np.ndarray]:
    ids = [int(v) for v in np.unique(values) if v != 0]
    if len(ids) > MAX_OBJECTS_PER_FILE:  # checked before making one full-size mask per id
        raise InputError(
            source,
            f"holds {len(ids)} distinct ids or colours, more than the {MAX_OBJECTS_PER_FILE} objects an id "
            "map can hold (a photo rather than a mask?)",
        )
    return [values == i for i in ids]


def _split_gray(values: np.ndarray, source: Path) -> list[np.ndarray]:
    """A 2-D integer or float array: id map, binary mask or soft matte (see the module docstring)."""
    if values.dtype == bool:
        return [values]
    if values.dtype.kind not in "iuf":
        raise InputError(source, f"mask values must be numbers or booleans, got {values.dtype} values")
    if np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all():
            raise InputError(source, "mask has NaN or infinite values")
        if values.max() <= 1.0:
            return [values > 0.5]
        values = np.rint(values).astype(np.int64)
    if values.min() < 0:
        raise InputError(source, "mask has negative values")
    nonzero = np.unique(values[values != 0])
    if len(nonzero) <= 1:
        return [values != 0]
    if nonzero.max() > MAX_ID_VALUE:  # a soft matte (anti-aliased edges): binarise at half range
        top = 255 if nonzero.max() <= 255 else 65535
        return [values >= (top + 1) // 2]
    return _split_ids(values, source)


def _read_image(path: Path) -> list[np.ndarray]:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input
        raise InputError(path, f"unreadable mask image ({exc})") from None
    if mode == "P":
        return _split_ids(arr.astype(np.int64), path)
    if mode == "1":
        return [arr.astype(bool)]
    if arr.ndim == 3:  # RGB / RGBA / LA: one object per distinct non-black colour
        rgb = arr[:, :, :3] if arr.shape[2] >= 3 else arr[:, :, :1]
        if (
            rgb.shape[2] == 3
            and (rgb[:, :, 0] == rgb[:, :, 1]).all()
            and (rgb[:, :, 1] == rgb[:, :, 2]).all()
        ):
            return _split_gray(rgb[:, :, 0], path)
        flat = rgb.reshape(-1, rgb.shape[2]).astype(np.int64)
        key = flat[:, 0] * 65536 + (flat[:, 1] * 256 + flat[:, 2] if rgb.shape[2] == 3 else 0)
        return [m.reshape(rgb.shape[:2]) for m in _split_ids(key, path)]
    return _split_gray(arr, path)


def _read_npy(path: Path) -> list[np.ndarray]:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"unreadable .npy mask ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(path, f".npy mask must hold numbers or booleans, got {arr.dtype} values")
    if arr.ndim == 3:
        return [_split_gray(a, path)[0] if a.dtype != bool else a for a in arr]
    if arr.ndim != 2:
        raise InputError(path, f".npy mask must be 2-D (H, W) or 3-D (N, H, W), got shape {arr.shape}")
    return _split_gray(arr, path)


def _read_rle_json(path: Path) -> list[np.ndarray]:
    try:
        data = json.loads(path.read_text())
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"not a valid JSON file ({exc})") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise InputError(path, "RLE file holds an empty list")
    out = []
    for item in items:
        if isinstance(item, Mapping) and "segmentation" in item:
            item = item["segmentation"]
        out.append(rle_decode(item, source=path))
    return out


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to ``size = (height, width)`` with nearest-neighbour sampling."""
    h, w = size
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def load_mask(
    path: PathLike,
    size: tuple[int, int] | None = None,
    *,
    resize: bool = False,
    allow_empty: bool = False,
) -> list[np.ndarray]:
    """Read a mask file into one bool ``(H, W)`` mask per object.

    Args:
        path: a PNG/image, ``.npy`` or COCO RLE ``.json`` file (see the module docstring for how
            values become objects).
        size: ``(height, width)`` the masks must have (the video's frame size); ``None`` skips the check.
        resize: resize (nearest neighbour) to ``size`` instead of failing on a size mismatch.
        allow_empty: accept a mask with no pixel set (otherwise an error).

    Returns:
        A list of bool arrays ``(H, W)``, one per object, in id order.

    Raises:
        InputError: missing or unreadable file, unknown format, size mismatch, empty mask.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such mask file")
    if p.is_dir():
        raise InputError(p, "is a folder, not a mask file")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        masks = _read_npy(p)
    elif suffix == ".json":
        masks = _read_rle_json(p)
    else:
        masks = _read_image(p)
    if not masks:
        if allow_empty:
            return []
        raise InputError(p, "mask is empty (no nonzero pixel)")
    if len(masks) > MAX_OBJECTS_PER_FILE:
        raise InputError(
            p, f"holds {len(masks)} objects, more than {MAX_OBJECTS_PER_FILE} (one id map's worth)"
        )
    if size is not None:
        h, w = int(size[0]), int(size[1])
        out = []
        for m in masks:
            if m.shape != (h, w):
                if not resize:
                    raise InputError(
                        p,
                        f"mask is {m.shape[1]}x{m.shape[0]} but the video frames are {w}x{h} "
                        "(pass --resize-masks to resize it)",
                    )
                m = resize_mask(m, (h, w))
            out.append(m)
        masks = out
    if not allow_empty:
        for m in masks:
            if not m.any():
                raise InputError(p, "mask is empty (no nonzero pixel)")
    return [np.ascontiguousarray(m, dtype=bool) for m in masks]


def load_masks(
    paths: Sequence[PathLike], size: tuple[int, int] | None = None, *, resize: bool = False
) -> list[np.ndarray]:
    """Read several mask files (each may hold several objects) into one flat list of objects."""
    out: list[np.ndarray] = []
    for p in paths:
        out.extend(load_mask(p, size, resize=resize))
    return out


# ----------------------------------------------------------------------------------------------------
# writing and helpers
# ----------------------------------------------------------------------------------------------------
def masks_to_id_map(masks: Sequence[np.ndarray], ids: Sequence[int] | None = None) -> np.ndarray:
    """Combine bool masks into a ``uint8`` id map (0 = background); where objects overlap the later wins.

    Args:
        masks: bool arrays ``(H, W)``, all the same size.
        ids: the value of each mask (default ``1, 2, …`` in order); each in ``1..255``.
    """
    if not masks:
        raise ValueError("masks_to_id_map needs at least one mask")
    ids = list(range(1, len(masks) + 1)) if ids is None else list(ids)
    if len(ids) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(ids)} ids")
    if any(not 1 <= i <= 255 for i in ids):
        raise ValueError("ids must be in 1..255 to fit an 8-bit id map")
    out = np.zeros(np.asarray(masks[0]).shape, dtype=np.uint8)
    for m, i in zip(masks, ids):
        m = np.asarray(m, dtype=bool)
        if m.shape != out.shape:
            raise ValueError(f"mask shapes differ: {m.shape} vs {out.shape}")
        out[m] = i
    return out


def save_id_map(path: PathLike, masks: Sequence[np.ndarray], ids: Sequence[int] | None = None) -> Path:
    """Write masks as one mode-``L`` PNG whose pixel value is the object id (0 = background)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(masks_to_id_map(masks, ids), mode="L").save(p)
    return p


def save_mask(path: PathLike, mask: np.ndarray) -> Path:
    """Write one bool mask as a mode-``L`` PNG (0 / 255)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, mode="L").save(p)
    return p


def mask_to_box(mask: np.ndarray) -> Box | None:
    """Tight box ``(x0, y0, x1, y1)`` of a 2-D mask in pixels, ``x1``/``y1`` exclusive; ``None`` if empty."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask_to_box expects a 2-D mask, got shape {m.shape}")
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def union_mask(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Pixel-wise OR of bool masks of one size."""
    if not masks:
        raise ValueError("union_mask needs at least one mask")
    out = np.zeros(np.asarray(masks[0]).shape, dtype=bool)
    for m in masks:
        out |= np.asarray(m, dtype=bool)
    return out


# ----------------------------------------------------------------------------------------------------
# tracks out: DAVIS palette PNGs and per-frame COCO RLE (the formats VOS and VideoRefer tools read)
# ----------------------------------------------------------------------------------------------------
def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS-2017 annotations, flat ``[r0, g0, b0, r1, …]`` (768 values).

    It is the PASCAL VOC colour map (id 1 → (128, 0, 0), 2 → (0, 128, 0), 3 → (128, 128, 0), …): the
    bits of the index are spread over the high bits of red, green and blue, three bits at a time.
    """
    out: list[int] = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += [r, g, b]
    return out


def save_palette_png(path: PathLike, masks: Sequence[np.ndarray], ids: Sequence[int] | None = None) -> Path:
    """Write masks as a DAVIS-style palette PNG: mode ``P``, pixel 0 = background, object k (0-based) =
    ``ids[k]`` (default k + 1), coloured with :func:`davis_palette`. :func:`load_mask` reads it back
    into the same objects, in id order."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(masks_to_id_map(masks, ids), mode="P")
    im.putpalette(davis_palette())
    im.save(p)
    return p


def track_to_rle(
    masks_by_frame: Mapping[int, Sequence[np.ndarray | None]]
    | Iterable[tuple[int, Sequence[np.ndarray | None]]],
    num_objects: int,
) -> list[dict[str, dict[str, Any] | None]]:
    """Per object, ``{str(frame): {"segmentation": COCO RLE} | None}``: the ``annotation`` layout of
    VideoRefer-Bench (one dict per object, keyed by frame index; ``None`` where the object is absent).

    Args:
        masks_by_frame: ``{frame: [mask of object 0, mask of object 1, …]}`` (``None`` or an empty mask:
            absent), or ``(frame, masks)`` pairs in frame order (e.g. a generator: each frame's masks
            are encoded and dropped, so a long track never sits decoded in memory).
        num_objects: number of objects.
    """
    out: list[dict[str, dict[str, Any] | None]] = [{} for _ in range(num_objects)]
    if isinstance(masks_by_frame, Mapping):
        pairs: Iterable[tuple[int, Sequence[np.ndarray | None]]] = (
            (f, masks_by_frame[f]) for f in sorted(masks_by_frame)
        )
    else:
        pairs = masks_by_frame
    for f, masks in pairs:
        per_obj = list(masks)
        if len(per_obj) != num_objects:
            raise ValueError(f"frame {f} has {len(per_obj)} masks, expected {num_objects}")
        for k, m in enumerate(per_obj):
            out[k][str(int(f))] = (
                None if m is None or not np.asarray(m).any() else {"segmentation": rle_encode(m)}
            )
    return out


def write_track_rle(
    path: PathLike,
    annotation: Sequence[Mapping[str, dict[str, Any] | None]],
    size: tuple[int, int],
    **extra: Any,
) -> Path:
    """Write per-frame COCO RLE per object as JSON: ``{"size": [h, w], "objects": ["object0", …],
    "annotation": annotation}`` plus ``extra`` keys (e.g. the tracker); ``annotation`` is what
    :func:`track_to_rle` returns. Read back with :func:`read_track_rle`."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "size": [int(size[0]), int(size[1])],
        "objects": [f"object{k}" for k in range(len(annotation))],
        "annotation": list(annotation),
        **extra,
    }
    p.write_text(json.dumps(doc))
    return p


def read_track_rle(path: PathLike) -> list[dict[int, np.ndarray | None]]:
    """Read a file of :func:`write_track_rle` (or any ``{"annotation": [...]}`` in the VideoRefer
    layout): per object, ``{frame: (H, W) bool mask or None}``.

    Raises:
        InputError: not JSON, no ``annotation`` list, a malformed RLE.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except Exception as exc:  # noqa: BLE001
        raise InputError(p, f"not a valid JSON file ({exc})") from None
    ann = doc.get("annotation") if isinstance(doc, Mapping) else None
    if not isinstance(ann, list):
        raise InputError(p, "expected a JSON object with an 'annotation' list (one dict per object)")
    out: list[dict[int, np.ndarray | None]] = []
    for k, per_obj in enumerate(ann):
        if not isinstance(per_obj, Mapping):
            raise InputError(p, f"annotation[{k}] must be a dict of frame -> mask")
        frames: dict[int, np.ndarray | None] = {}
        for key, value in per_obj.items():
            if isinstance(value, Mapping) and "segmentation" in value:
                value = value["segmentation"]
            frames[int(key)] = None if value is None else rle_decode(value, source=p)
        out.append(dict(sorted(frames.items())))
    return out
