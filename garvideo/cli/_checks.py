"""Checks the commands run on their options before any heavy work (tracking, model loading), and the
Ctrl-C handling of the one-shot commands (``track``, ``describe``, ``ask``).

Each check reuses the rule of the code that would otherwise fail later (the tracker names of
:mod:`garvideo.trackers`, :func:`garvideo.model.loading.resolve_device`,
:func:`garvideo.pipeline.rewrite_object_refs`), so the early and the late check cannot disagree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from garvideo.errors import InputError, PathLike
from garvideo.model.prompts import MAX_REGIONS
from garvideo.overlay import VIDEO_CODECS
from garvideo.runs.outputs import check_resume, check_writable
from garvideo.runs.settings import SettingsMismatch, short_value
from garvideo.trackers import TRACKERS

if TYPE_CHECKING:
    from garvideo.runs.settings import RunSettings
    from garvideo.runs.shards import Shard

#: ``--dtype`` values the CLI accepts (the help text lists them); ``auto`` picks per device.
CLI_DTYPES = ("float32", "bfloat16", "fp32", "bf16", "auto")


def check_tracker(name: str) -> None:
    """``--tracker`` is a known tracker name."""
    if name not in TRACKERS:
        raise InputError("tracker", f"unknown tracker {name!r} (choose from {', '.join(TRACKERS)})")


def check_device(device: str | None) -> None:
    """``--device`` parses and, for CUDA, a CUDA device is there."""
    if device is None:
        return
    from garvideo.model.loading import resolve_device  # imports torch: not at `garvideo --help`

    try:
        resolve_device(device)
    except InputError as exc:
        raise InputError("device", exc.problem) from None


def check_dtype(dtype: str | None) -> None:
    """``--dtype`` is one of :data:`CLI_DTYPES`."""
    if dtype is not None and dtype not in CLI_DTYPES:
        raise InputError("dtype", f"must be float32, bfloat16 or auto, got {dtype!r}")


def check_model_options(tracker: str, device: str | None, dtype: str | None = None) -> None:
    """The tracker, device and dtype options of a command that tracks and loads GAR."""
    check_tracker(tracker)
    check_device(device)
    check_dtype(dtype)


def check_frame(frame: int, num_frames: int) -> None:
    """``--frame`` is a frame of the clip."""
    if not 0 <= frame < num_frames:
        raise InputError(
            "frame",
            f"frame {frame} is out of range (the clip has {num_frames} frames: 0..{num_frames - 1})",
        )


def check_objects(num_objects: int) -> None:
    """The number of objects the masks gave is one GAR takes (1 to ``MAX_REGIONS``)."""
    if not 1 <= num_objects <= MAX_REGIONS:
        raise InputError("masks", f"expected 1 to {MAX_REGIONS} objects, got {num_objects}")


def check_question(question: str, options: Sequence[str] | None, num_objects: int) -> None:
    """``ask``'s question and options, against the number of objects given."""
    from garvideo.pipeline import rewrite_object_refs  # imports torch: not at `garvideo --help`

    if not question.strip():
        raise InputError("question", "the question is empty")
    rewrite_object_refs(question, num_objects)
    if options:
        for i, option in enumerate(options):
            if not option.strip():
                raise InputError("options", f"option {chr(ord('A') + i)} is empty")
        if len(options) < 2:
            raise InputError(
                "options", f"a multiple-choice question needs at least 2 options, got {len(options)}"
            )
        if len(options) > 26:
            raise InputError("options", f"at most 26 options (A-Z), got {len(options)}")


def check_outputs(**paths: tuple[PathLike | None, bool]) -> None:
    """Before any work: each output can be written. ``paths`` maps a flag (``out`` for ``--out``) to
    ``(path or None, is_folder)``; the first problem is raised naming the flag's value.

    Raises:
        InputError: see :func:`garvideo.runs.outputs.check_writable`.
    """
    for name, (path, folder) in paths.items():
        if path is None:
            continue
        flag = "--" + name.replace("_", "-")
        check_writable(Path(path), flag, folder=folder)
        if name == "overlay":
            suffix = Path(path).suffix.lower()
            if suffix not in VIDEO_CODECS:
                raise InputError(
                    path, f"unsupported {flag} format {suffix!r} (use {', '.join(VIDEO_CODECS)})"
                )


@dataclass
class Stage:
    """What a one-shot command is doing, for the line Ctrl-C prints."""

    text: str


@contextlib.contextmanager
def interrupt_hint(first: str) -> Iterator[Stage]:
    """Turn Ctrl-C into one line ``interrupted: <stage>`` and exit 130.

    The command updates ``stage.text`` as it goes (what was written so far, what to rerun).
    """
    stage = Stage(first)
    try:
        yield stage
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {stage.text}", err=True)
        raise typer.Exit(130) from None


_WAYS_ON = "write this run to a new --out, or add --overwrite to replace it (a fresh run)"


def word_settings_mismatch(exc: InputError) -> InputError:
    """A :class:`garvideo.runs.settings.SettingsMismatch` in the CLI's words: the setting that differs
    (its field; :func:`garvideo.cli._errors.error_line` prints its flag), the two values, and the two
    ways on (other errors are returned unchanged)."""
    if not isinstance(exc, SettingsMismatch):
        return exc
    name = exc.path.name
    if exc.field is None:
        return InputError(
            exc.path, f"{exc.problem}, so a rerun cannot tell they match this run's; {_WAYS_ON}"
        )
    return InputError(exc.field, f"{short_value(exc.old)} in {name}, {short_value(exc.new)} now; {_WAYS_ON}")


@contextlib.contextmanager
def worded_settings_errors() -> Iterator[None]:
    """Reword a settings mismatch raised inside (see :func:`word_settings_mismatch`)."""
    try:
        yield
    except SettingsMismatch as exc:
        raise word_settings_mismatch(exc) from None


def check_rerun(
    out: PathLike, settings: RunSettings | None, *, shard: str | Shard | None, overwrite: bool
) -> None:
    """Before any model work: a rerun into ``out`` resumes only a run made with the same settings."""
    with worded_settings_errors():
        check_resume(out, settings, shard=shard, overwrite=overwrite)
