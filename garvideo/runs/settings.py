"""The settings of a batch or benchmark run, recorded beside its output and compared on a rerun.

A run's answers depend on how they were made: the model (which weights), the tracker (and its
checkpoint / options), K, the keyframe strategy, the RoI mode, the dtype, the generation length, the
prompt conventions and garvideo's version. These are written, before the first record, to a sidecar
``<stem>.settings.json`` beside the output JSONL (and beside each shard part), atomically::

    {"format": "garvideo-run-settings/1",
     "settings": {"model": "HaochenWang/GAR-1B", "model_revision": "…", "tracker": "flow", …},
     "info": {"data": "VideoRefer-Bench-Q.json", "device": "cuda:0"}}

``settings`` are compared: a rerun resumes only when they are equal (:func:`check_settings`), a
merge only joins parts whose settings are equal, and the scores of a predictions file are labelled
with them. ``info`` is recorded, not compared (where the run read its input, on which device).

Model identity: a hub id with the revision (the snapshot's commit) when the weights come from the
Hugging Face cache; otherwise the folder with ``model_hash``, a SHA-256 (first 16 hex digits) of its
``config.json``, its weights index (when sharded) and, per weight file, its name, size and
safetensors header (tensor names, dtypes, shapes, offsets). Weights that differ only in values with
the same layout, file sizes and folder are not told apart (hashing gigabytes per run is not done).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from garvideo._version import __version__
from garvideo.errors import InputError, PathLike

if TYPE_CHECKING:  # the pipeline and the trackers' detectors import torch; this module is read by the CLI
    from garvideo.pipeline import GarVideo
    from garvideo.trackers import Tracker
    from garvideo.trackers.text import TextDetector

SETTINGS_FORMAT = "garvideo-run-settings/1"

#: The prompt conventions of this garvideo (the order of region runs in the prompt: object-major,
#: then keyframe; see :func:`garvideo.model.prompts.video_region_order`). Bump when they change.
PROMPT_CONVENTIONS = {"region_order": "object-major"}

#: Tracker ``describe()`` entries that say how a run went, not how it was set up.
_TRACKER_RUNTIME_KEYS = frozenset({"memory_entries_max", "device"})


def settings_path(out: PathLike) -> Path:
    """The settings sidecar of an output: ``<stem>.settings.json`` beside ``OUT`` (or a part)."""
    p = Path(out)
    return p.with_name(p.stem + ".settings.json")


@dataclass(frozen=True)
class RunSettings:
    """What a run records about itself.

    Attributes:
        settings: the values that shape an answer (compared on resume and merge).
        info: recorded only (input file, device).
    """

    settings: dict[str, Any]
    info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"format": SETTINGS_FORMAT, "settings": dict(self.settings), "info": dict(self.info)}


class SettingsMismatch(InputError):
    """A rerun (or a merge) found an output made with other settings.

    Attributes:
        field: the first differing setting (a key of :attr:`RunSettings.settings`), or ``None`` when the
            output has no recorded settings at all.
        old, new: its value in the output and now.
        path: the output file.
    """

    def __init__(self, path: PathLike, field: str | None, old: Any, new: Any, problem: str) -> None:
        super().__init__(path, problem)
        self.path = Path(path)
        self.field = field
        self.old = old
        self.new = new


def short_value(value: Any) -> str:
    """A setting's value in a one-line message."""
    return (
        "none" if value is None else (value if isinstance(value, str) else json.dumps(value, sort_keys=True))
    )


def first_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """The first key (in ``new``'s order, then ``old``'s) whose value differs, or ``None``."""
    for k in [*new, *(k for k in old if k not in new)]:
        if old.get(k) != new.get(k):
            return k
    return None


def mismatch(path: PathLike, old: Mapping[str, Any], new: Mapping[str, Any]) -> SettingsMismatch | None:
    """The :class:`SettingsMismatch` of an output ``path`` made with ``old`` settings, run now with ``new``."""
    field = first_difference(old, new)
    if field is None:
        return None
    name = Path(path).name
    return SettingsMismatch(
        path,
        field,
        old.get(field),
        new.get(field),
        f"{field}: {short_value(old.get(field))} in {name}, {short_value(new.get(field))} now",
    )


def read_settings(out: PathLike) -> RunSettings | None:
    """The settings recorded for an output, or ``None`` when it has no sidecar (made elsewhere or by an
    older garvideo).

    Raises:
        InputError: an unreadable sidecar.
    """
    sp = settings_path(out)
    if not sp.is_file():
        return None
    try:
        data = json.loads(sp.read_text(encoding="utf-8"))
        if data.get("format") != SETTINGS_FORMAT or not isinstance(data.get("settings"), dict):
            raise ValueError(f"not a {SETTINGS_FORMAT} file")
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(
            sp,
            f"unreadable settings file ({exc}); remove it (the output then counts as made without recorded "
            "settings), or rerun its run with --overwrite (a fresh run)",
        ) from None
    return RunSettings(dict(data["settings"]), dict(data.get("info") or {}))


def write_settings(out: PathLike, run: RunSettings) -> Path:
    """Write the sidecar of ``out`` through a temporary file and ``os.replace``."""
    sp = settings_path(out)
    sp.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=sp.name + ".", suffix=".tmp", dir=sp.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(run.to_dict(), f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, sp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sp


def check_settings(out: PathLike, run: RunSettings, *, has_records: bool) -> None:
    """Refuse to resume ``out`` when it was made with other settings.

    Args:
        out: the output (part) file.
        run: the settings of this run.
        has_records: ``out`` holds records (an absent or empty output is a fresh start).

    Raises:
        SettingsMismatch: the recorded settings differ (``field`` names the first difference), or the
            output holds records but no settings were recorded for it (``field`` is ``None``).
    """
    if not has_records:
        return
    old = read_settings(out)
    if old is None:
        raise SettingsMismatch(
            out,
            None,
            None,
            None,
            f"holds records but no recorded settings ({settings_path(out).name} is missing)",
        )
    found = mismatch(out, old.settings, run.settings)
    if found is not None:
        raise found


# ----------------------------------------------------------------------------------------------------
# what the settings are
# ----------------------------------------------------------------------------------------------------
def _safetensors_header(path: Path) -> bytes:
    """The JSON header of a safetensors file (the 8-byte length and the header itself)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return head
        n = int.from_bytes(head, "little")
        return head + f.read(min(n, 100_000_000))


def model_identity(folder: PathLike, name: str) -> dict[str, Any]:
    """``{"model": hub id, "model_revision": commit}`` for a Hugging Face cache snapshot, else
    ``{"model": folder, "model_hash": …}`` (see the module doc)."""
    folder = Path(folder)
    if folder.parent.name == "snapshots" and "/" in name and not Path(name).expanduser().is_dir():
        return {"model": name, "model_revision": folder.name}
    from garvideo.model.loading import weight_files  # imports torch and transformers: only when hashing

    h = hashlib.sha256()
    for extra in ("config.json", "model.safetensors.index.json"):
        p = folder / extra
        if p.is_file():
            h.update(extra.encode() + b"\0" + p.read_bytes() + b"\0")
    with contextlib.suppress(InputError):  # no weights: the load reports it
        for w in weight_files(folder):
            h.update(f"{w.name}\0{w.stat().st_size}\0".encode() + _safetensors_header(w))
    return {"model": str(folder.resolve()), "model_hash": h.hexdigest()[:16]}


def tracker_settings(tracker: Tracker) -> dict[str, Any]:
    """The tracker's name and set-up (checkpoint, config, options) as its ``describe()`` reports them."""
    described = {}
    with contextlib.suppress(Exception):
        described = dict(tracker.describe() or {})
    opts = {k: v for k, v in described.items() if k not in _TRACKER_RUNTIME_KEYS}
    out: dict[str, Any] = {"tracker": str(tracker.name)}
    if "checkpoint" in opts:
        out["tracker_checkpoint"] = opts.pop("checkpoint")
    out["tracker_options"] = json.loads(json.dumps(opts, default=str))
    return out


def pipeline_settings(gv: GarVideo, **extra: Any) -> dict[str, Any]:
    """The answer-shaping settings of a :class:`garvideo.pipeline.GarVideo` (the model is resolved, not
    loaded; the tracker is built), with ``extra`` ones (e.g. the benchmark ``mode``) after them.

    Raises:
        ModelUnavailableError / InputError: the model cannot be found (as loading it would).
    """
    if gv.model_loaded:
        bundle = gv.bundle
        ident = model_identity(bundle.folder, str(bundle.name))
    else:
        from garvideo.model.loading import resolve_model_dir  # imports torch: only for a model not loaded

        folder, name = resolve_model_dir(gv.model_name)  # the name the model will be loaded from
        ident = model_identity(folder, name)
    settings = gv.settings
    return {
        **ident,
        **tracker_settings(gv.tracker),
        "num_frames": int(settings.num_frames),
        "keyframes": settings.keyframes,
        "include_prompt_frame": bool(settings.include_prompt_frame),
        "per_second": float(settings.per_second),
        "roi_mode": settings.roi_mode,
        "dtype": gv.model_dtype,
        "max_new_tokens": int(settings.max_new_tokens),
        **PROMPT_CONVENTIONS,
        **extra,
        "garvideo": __version__,
    }


def text_settings(detector: TextDetector | None) -> dict[str, Any]:
    """The settings of a run's text prompts (a :class:`garvideo.trackers.text.TextDetector`, or ``None``:
    no entries): ``text_threshold``, ``text_nms_iou`` and the SAM 3 checkpoint's identity
    (``text_checkpoint`` with ``text_checkpoint_revision`` or ``text_checkpoint_hash``, as
    :func:`model_identity`; ``None`` for a detector built from objects in memory)."""
    if detector is None:
        return {}
    out: dict[str, Any] = {
        "text_threshold": float(detector.threshold),
        "text_nms_iou": float(detector.nms_iou),
        "text_checkpoint": None,
    }
    checkpoint = detector.checkpoint
    if checkpoint is not None:
        ident = model_identity(Path(checkpoint), str(detector.checkpoint_name or checkpoint))
        out["text_checkpoint"] = ident["model"]
        for k in ("model_revision", "model_hash"):
            if k in ident:
                out["text_checkpoint_" + k.split("_", 1)[1]] = ident[k]
    return out


def build_run_settings(gv: GarVideo, *, info: Mapping[str, Any] | None = None, **extra: Any) -> RunSettings:
    """The :class:`RunSettings` of a run with ``gv`` (see :func:`pipeline_settings`); ``info`` adds
    recorded-only entries (the device is always recorded)."""
    recorded: dict[str, Any] = {"device": None if gv.device is None else str(gv.device)}
    recorded.update(info or {})
    return RunSettings(pipeline_settings(gv, **extra), recorded)


__all__ = [
    "PROMPT_CONVENTIONS",
    "SETTINGS_FORMAT",
    "RunSettings",
    "SettingsMismatch",
    "build_run_settings",
    "check_settings",
    "first_difference",
    "mismatch",
    "model_identity",
    "pipeline_settings",
    "read_settings",
    "settings_path",
    "text_settings",
    "tracker_settings",
    "write_settings",
]
