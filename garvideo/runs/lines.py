"""JSONL lines: the exact bytes of a record, reading a file of them, atomic rewrites, record keys.

Every writer of the run machinery writes a record with :func:`dumps_line` (one ``json.dumps`` line with
``ensure_ascii=False``); :func:`read_jsonl` reads a file back, leaving out a last line cut off by a crash
(it has no newline); :func:`write_jsonl_atomic` rewrites a file through a temporary file and ``os.replace``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from garvideo.errors import InputError, PathLike

__all__ = ["JsonlContents", "Record", "dumps_line", "read_jsonl", "record_key", "write_jsonl_atomic"]

logger = logging.getLogger(__name__)

Record = dict[str, Any]
"""One output line as a JSON object."""


def dumps_line(record: Mapping[str, Any]) -> str:
    """One record as a JSON line (with the trailing newline), the exact bytes every writer uses."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def record_key(value: Any) -> str:
    """The key an id is compared by: ``0`` and ``"0"`` are the same item."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"an id must be a string or an integer, got {value!r}")
    return str(value)


@dataclass
class JsonlContents:
    """What :func:`read_jsonl` found.

    Attributes:
        records: the complete, parseable lines, in file order.
        valid_bytes: length of the file's prefix holding exactly those lines (a rerun truncates the
            file there before appending).
        dropped_tail: a last line without its newline (a crash mid-write) was found and left out.
    """

    records: list[Record]
    valid_bytes: int
    dropped_tail: bool = False


def read_jsonl(path: PathLike, *, tolerate_truncated_tail: bool = True) -> JsonlContents:
    """Read a JSONL file of objects.

    Args:
        path: the file (it must exist).
        tolerate_truncated_tail: a last line with no trailing newline is treated as cut off by a
            crash and left out (with a warning) instead of being parsed.

    Raises:
        InputError: a complete line is not a JSON object (``path:line``).
    """
    p = Path(path)
    data = p.read_bytes()
    records: list[Record] = []
    pos = 0
    dropped = False
    lineno = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        lineno += 1
        if end < 0:  # no newline: the last line is incomplete
            if tolerate_truncated_tail:
                logger.warning("%s: dropping an incomplete last line (%d bytes)", p, len(data) - pos)
                dropped = True
                break
            end = len(data)
        raw = data[pos:end].strip()
        nxt = end + 1
        if raw:
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{p}:{lineno}", f"not a valid JSON line ({exc})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{p}:{lineno}", "each line must be a JSON object")
            records.append(obj)
        pos = min(nxt, len(data))
    return JsonlContents(records=records, valid_bytes=pos, dropped_tail=dropped)


def write_jsonl_atomic(path: PathLike, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write records to ``path`` through a temporary file and ``os.replace`` (never half-written)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for r in records:
                f.write(dumps_line(r))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
