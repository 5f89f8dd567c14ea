"""The checks made before any work: the output can be written, no other process is writing it, and a rerun
into it would resume a run made with the same settings."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from garvideo.errors import InputError, PathLike
from garvideo.runs.lines import read_jsonl
from garvideo.runs.locking import output_lock
from garvideo.runs.settings import RunSettings, check_settings, settings_path
from garvideo.runs.shards import Shard, manifest_path, resolve_shard

__all__ = ["check_output", "check_resume", "check_writable", "remove_run_files"]


def check_writable(path: PathLike, what: str = "out", *, folder: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written: a file (or, with ``folder``, a folder to
    write files in). Nothing is created: an existing folder on the way (the nearest one when the
    folders do not exist yet) is probed with a temporary file, removed at once.

    Args:
        path: the file (or folder) to be written.
        what: what ``path`` is, for the message (a field such as ``out``; a front end may pass its own word).
        folder: ``path`` is a folder to write files in.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: ``path`` is a folder where a file is wanted (or a file where a folder is), a file
            stands where a folder on its way should be, or the place cannot be written to.
    """
    p = Path(path)
    if not folder and p.is_dir():
        raise InputError(p, f"is a folder; {what} must name a file to write")
    if folder and p.exists() and not p.is_dir():
        raise InputError(p, f"is a file; {what} takes a folder (files are written in it)")
    anc = p if folder and p.is_dir() else p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(p, f"cannot be written: {anc} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".garvideo-", suffix=".probe", dir=anc)
        os.close(fd)
        os.unlink(probe)
        if not folder and p.exists():
            with open(p, "ab"):
                pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(p, f"cannot be written (in {anc}: {reason})") from None
    return p


def check_output(out: PathLike, shard: str | Shard | None = None) -> Path:
    """Before any work: the file this process would write (the part when sharded) can be written and
    no other process is writing it. Returns that file.

    Raises:
        InputError: see :func:`check_writable`.
        OutputLocked: another process holds the file's lock.
    """
    path = check_writable(resolve_shard(shard).part_path(out))
    with output_lock(path):
        pass
    return path


def check_resume(
    out: PathLike, settings: RunSettings | None, *, shard: str | Shard | None = None, overwrite: bool = False
) -> Path:
    """Before any work: a rerun into ``out`` (its part when sharded) would resume a run made with the
    same ``settings`` (nothing to check with ``overwrite``, no ``settings``, or no records yet).
    Returns the file checked.

    Raises:
        SettingsMismatch: the output was made with other settings, or holds records with none recorded.
        InputError: an unreadable output.
    """
    path = resolve_shard(shard).part_path(out)
    if settings is None or overwrite or not path.is_file():
        return path
    check_settings(path, settings, has_records=bool(read_jsonl(path).records))
    return path


def remove_run_files(path: PathLike) -> None:
    """Remove an output (part) file and its settings and ids files (a run with ``overwrite``)."""
    for p in (Path(path), settings_path(path), manifest_path(path)):
        p.unlink(missing_ok=True)
