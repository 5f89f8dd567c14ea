"""Resumable, sharded JSONL runs: the one place batch QA and the evaluator write their outputs.

A *run* maps a list of input items to one JSON line each, keyed by the item's id:

* lines are written as produced (one ``write`` per line, flushed and ``fsync``'d), so Ctrl-C or a
  crash loses nothing already written;
* a rerun reads what is there and skips ids already answered (a last line cut off by a crash is
  detected — it has no newline — and dropped, so that item is simply redone); items recorded with an
  ``error`` are retried (``skip_failed`` keeps them);
* a run given its settings (:class:`garvideo.run_settings.RunSettings`) records them beside the
  output (``<stem>.settings.json``) before the first line, and a rerun resumes only when they are
  equal (else :class:`garvideo.run_settings.SettingsMismatch`); ``overwrite`` starts afresh;
* an item whose processing raises is recorded as a line with its ``error`` and the run goes on;
* when every item of the run is present, the file is rewritten (atomically) in input order, so the
  finished file does not depend on the processing order, interruptions or retries;
* sharding: ``--shard I/N`` or torchrun's ``RANK`` / ``WORLD_SIZE`` pick this rank's items. Without
  a ``group`` they are a contiguous slice (as the official VideoRefer inference scripts'
  ``--num-chunks/--chunk-idx``); with one (e.g. the clip a question is on) every item of a group goes
  to the same rank, so a clip is tracked and encoded once, and the ranks get about equal numbers of
  items (:meth:`Shard.assign`). Each rank writes ``OUT.part-I-of-N.jsonl`` and
  ``OUT.part-I-of-N.ids.json`` (the ids it must answer, so a merge can tell a finished part from one
  cut short); the rank that finishes last merges the parts in input order (:func:`merge_shards` with
  the ids), which gives exactly the file a single run writes; parts with different recorded
  settings are not merged;
* one writer per file: a run (and a merge) holds an advisory lock (``fcntl.flock`` on ``FILE.lock``)
  on every file it writes; a second process gets :class:`OutputBusy` naming the holder's pid.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from garvideo.errors import InputError, PathLike

if TYPE_CHECKING:
    from garvideo.run_settings import RunSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
Record = dict[str, Any]

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


# ----------------------------------------------------------------------------------------------------
# reading and writing lines
# ----------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------
# one writer per output
# ----------------------------------------------------------------------------------------------------
class OutputBusy(InputError):
    """Another process holds the lock of an output file (it is writing or merging it)."""


def lock_path(path: PathLike) -> Path:
    """The lock file of an output: ``FILE.lock`` beside it (removed when the lock is released)."""
    p = Path(path)
    return p.with_name(p.name + ".lock")


@contextlib.contextmanager
def output_lock(path: PathLike) -> Iterator[Path]:
    """Hold the advisory write lock of ``path`` (``fcntl.flock`` on :func:`lock_path`) meanwhile.

    The lock file holds the holder's pid, for the message the next writer gets. It is released by the
    kernel when the process dies, so ``kill -9`` leaves no stale lock (only, at most, the lock file).

    Raises:
        OutputBusy: another process holds the lock.
    """
    import fcntl  # POSIX only, as the rest of the run machinery (fsync, os.replace on one volume)

    lp = lock_path(path)
    lp.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise OutputBusy(path, f"is being written by another process (pid {pid})") from None
        try:  # the holder before us may have removed the file after we opened it: lock the new one
            same = os.stat(lp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield lp
    finally:
        with contextlib.suppress(OSError):
            lp.unlink()
        os.close(fd)


def check_writable(path: PathLike, what: str = "--out", *, folder: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written: a file (or, with ``folder``, a folder to
    write files in). Nothing is created: an existing folder on the way (the nearest one when the
    folders do not exist yet) is probed with a temporary file, removed at once.

    Raises:
        InputError: ``path`` is a folder where a file is wanted (or a file where a folder is), a file
            stands where a folder on its way should be, or the place cannot be written to.
    """
    p = Path(path)
    if not folder and p.is_dir():
        raise InputError(p, f"is a folder; give {what} a file to write")
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
        InputError: see :func:`check_writable`; :class:`OutputBusy` when another process holds it.
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
    from garvideo.run_settings import check_settings

    path = resolve_shard(shard).part_path(out)
    if settings is None or overwrite or not path.is_file():
        return path
    check_settings(path, settings, has_records=bool(read_jsonl(path).records))
    return path


def remove_run_files(path: PathLike) -> None:
    """Remove an output (part) file and its settings and ids files (``--overwrite``)."""
    from garvideo.run_settings import settings_path

    for p in (Path(path), settings_path(path), manifest_path(path)):
        p.unlink(missing_ok=True)


def manifest_path(part: PathLike) -> Path:
    """The ids file of a shard part: ``OUT.part-I-of-N.ids.json`` for ``OUT.part-I-of-N.jsonl``."""
    p = Path(part)
    return p.with_name(p.stem + ".ids.json")


def write_manifest(part: PathLike, ids: Sequence[str]) -> Path:
    """Record the ids a shard part must hold (read by :func:`merge_shards`)."""
    mp = manifest_path(part)
    fd, tmp = tempfile.mkstemp(prefix=mp.name + ".", suffix=".tmp", dir=mp.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"ids": list(ids)}, f)
    os.replace(tmp, mp)
    return mp


def read_manifest(part: PathLike) -> list[str] | None:
    """The ids a shard part must hold, or ``None`` when it has no ids file (written before there were)."""
    mp = manifest_path(part)
    if not mp.is_file():
        return None
    try:
        ids = json.loads(mp.read_text(encoding="utf-8"))["ids"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(mp, f"unreadable ids file of a shard part ({exc})") from None
    return [record_key(i) for i in ids]


def _locks_output(fn: Callable[..., RunSummary]) -> Callable[..., RunSummary]:
    """Run ``run_jsonl`` under the write lock of the file it writes (the part file when sharded)."""

    @functools.wraps(fn)
    def locked(items: Any, out: PathLike, spec: Any, *args: Any, **kwargs: Any) -> RunSummary:
        path = resolve_shard(kwargs.get("shard")).part_path(out)
        with output_lock(path):
            return fn(items, out, spec, *args, **kwargs)

    return locked


# ----------------------------------------------------------------------------------------------------
# sharding
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """Rank ``index`` of ``count`` (0-based); ``Shard(0, 1)`` is an unsharded run.

    Rank ``i`` takes the contiguous slice ``[i * n // count, (i + 1) * n // count)`` of ``n`` items, or,
    when the items have groups, the groups whose middle item falls in that slice (:meth:`assign`).
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InputError("--shard", f"shard {self.index}/{self.count} is out of range (need 0 <= I < N)")

    @property
    def is_sharded(self) -> bool:
        return self.count > 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``"I/N"`` (0-based rank ``I`` of ``N``)."""
        m = _SHARD_RE.match(text or "")
        if not m:
            raise InputError("--shard", f"expected I/N (e.g. 0/4), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Shard | None:
        """The torchrun rank (``RANK`` of ``WORLD_SIZE``), or ``None`` outside torchrun."""
        env = os.environ if env is None else env
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return None
        try:
            return cls(int(env["RANK"]), int(env["WORLD_SIZE"]))
        except ValueError:
            raise InputError("RANK/WORLD_SIZE", "torchrun environment variables are not integers") from None

    def bounds(self, n: int) -> tuple[int, int]:
        """``(start, stop)`` of this rank's slice of ``n`` items."""
        return (self.index * n // self.count, (self.index + 1) * n // self.count)

    def assign(self, groups: Sequence[Hashable]) -> list[int]:
        """The rank of each of ``len(groups)`` items, keeping the items of a group on one rank.

        Groups are taken in the order of their first item; the ``g``-th group (``s`` items, the
        groups before it holding ``c``) goes to the rank whose :meth:`bounds` slice contains position
        ``c + (s - 1) // 2`` (its middle item). So the ranks hold about ``n / count`` items each (off
        by at most half a group at each cut), consecutive groups stay together, and groups of one item
        are sharded exactly as :meth:`bounds` slices.
        """
        n = len(groups)
        members: dict[Hashable, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        ranks = [0] * n
        before = 0
        for idx in members.values():
            middle = before + (len(idx) - 1) // 2
            rank = next(r for r in range(self.count) if middle < (r + 1) * n // self.count)
            for i in idx:
                ranks[i] = rank
            before += len(idx)
        return ranks

    def indices(self, n: int, groups: Sequence[Hashable] | None = None) -> list[int]:
        """The positions (ascending) of this rank's items among ``n`` items with these ``groups``."""
        if groups is None or not self.is_sharded:
            start, stop = self.bounds(n)
            return list(range(start, stop))
        if len(groups) != n:
            raise ValueError(f"{len(groups)} groups for {n} items")
        return [i for i, r in enumerate(self.assign(groups)) if r == self.index]

    def select(self, items: Sequence[T], group: Callable[[T], Hashable] | None = None) -> list[T]:
        """This rank's items (input order kept): a contiguous slice, or with ``group`` whole groups."""
        groups = [group(it) for it in items] if group is not None and self.is_sharded else None
        return [items[i] for i in self.indices(len(items), groups)]

    def part_path(self, out: PathLike) -> Path:
        """Where this rank writes: ``out`` itself unsharded, else ``OUT.part-I-of-N.jsonl``."""
        out = Path(out)
        if not self.is_sharded:
            return out
        return out.with_name(f"{out.stem}.part-{self.index}-of-{self.count}{out.suffix}")


def resolve_shard(shard: str | Shard | None = None, env: Mapping[str, str] | None = None) -> Shard:
    """The shard of this process: an explicit ``--shard`` wins, then torchrun's env, else unsharded."""
    if isinstance(shard, Shard):
        return shard
    if shard:
        return Shard.parse(shard)
    return Shard.from_env(env) or Shard()


def part_paths(out: PathLike, count: int) -> list[Path]:
    """The ``count`` part files of a sharded run writing ``out``, in rank order."""
    return [Shard(i, count).part_path(out) for i in range(count)]


def find_parts(out: PathLike) -> list[Path]:
    """The part files present next to ``out`` (``OUT.part-I-of-N.jsonl``), checked to be one full set.

    Raises:
        InputError: no parts, parts of different ``N``, or a rank missing.
    """
    out = Path(out)
    pattern = re.compile(re.escape(out.stem) + r"\.part-(\d+)-of-(\d+)" + re.escape(out.suffix) + "$")
    found: dict[int, dict[int, Path]] = {}
    if out.parent.is_dir():
        for p in out.parent.iterdir():
            m = pattern.match(p.name)
            if m:
                found.setdefault(int(m.group(2)), {})[int(m.group(1))] = p
    if not found:
        raise InputError(out, f"no part files {out.stem}.part-I-of-N{out.suffix} next to it")
    if len(found) > 1:
        raise InputError(out, f"part files of different shard counts {sorted(found)}: remove the stale ones")
    count, ranks = next(iter(found.items()))
    missing = [i for i in range(count) if i not in ranks]
    if missing:
        raise InputError(out, f"part files of ranks {missing} of {count} are missing")
    return [ranks[i] for i in range(count)]


@dataclass
class MergeResult:
    """What :func:`merge_shards` did: the merged file, the parts read and the number of records.

    ``missing``: records the parts' ids files expect but the parts lack (only non-zero when merged
    with ``allow_partial``); ``incomplete``: those counts per part.
    """

    out: Path
    parts: list[Path]
    records: int
    missing: int = 0
    incomplete: dict[Path, int] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return self.missing > 0


def merge_shards(
    out: PathLike,
    parts: Sequence[PathLike] | None = None,
    *,
    id_key: str = "id",
    expected_ids: Sequence[Any] | None = None,
    allow_partial: bool = False,
    held: Sequence[PathLike] = (),
) -> MergeResult:
    """Concatenate the finished parts of a sharded run into ``out``, in rank order.

    Each finished part is in input order (see :func:`run_jsonl`). With ``expected_ids`` the records are
    put in that order, so the result is byte for byte the file a single run writes; without, the parts
    are concatenated in rank order, which is that file too when each rank's items follow each other in
    the input (contiguous slices, or groups whose items are consecutive in the input).

    Args:
        out: the merged file (the ``--out`` the ranks were given).
        parts: the part files in rank order; default :func:`find_parts`.
        id_key: the field holding each record's id.
        expected_ids: all the ids of the run in input order, when known: the merge then checks that
            none is missing and orders the records by them.
        allow_partial: merge parts that lack records their ids files expect (the result says how many)
            instead of refusing.
        held: files whose lock the caller already holds (a rank merging after finishing its part).

    Raises:
        InputError: a part is missing or incomplete (its ids file lists ids it lacks, unless
            ``allow_partial``), an id appears twice, or an expected id is missing.
        OutputBusy: another process is writing ``out`` or a part.
    """
    out = Path(out)
    part_list = [Path(p) for p in parts] if parts is not None else find_parts(out)
    held_set = {Path(h) for h in held}
    with contextlib.ExitStack() as stack:
        for p in [out, *part_list]:
            if p not in held_set:
                stack.enter_context(output_lock(p))
        return _merge_locked(out, part_list, id_key, expected_ids, allow_partial)


def _merge_locked(
    out: Path,
    part_list: list[Path],
    id_key: str,
    expected_ids: Sequence[Any] | None,
    allow_partial: bool,
) -> MergeResult:
    from garvideo.run_settings import mismatch, read_settings, settings_path, write_settings

    incomplete: dict[Path, int] = {}
    by_key: dict[str, Record] = {}  # insertion order: rank order, then file order
    seen: dict[str, Path] = {}
    for p in part_list:
        if not p.is_file():
            raise InputError(p, "no such part file")
    recorded = [read_settings(p) for p in part_list]
    for p, rs in zip(part_list[1:], recorded[1:]):
        first, other = recorded[0], rs
        if (first is None) != (other is None):
            without = part_list[0] if first is None else p
            raise InputError(
                without,
                "has no recorded settings while other parts have: its records cannot be told to "
                "match theirs; rerun that rank with --overwrite (a fresh run of its part)",
            )
        if first is not None and other is not None:
            found = mismatch(p, first.settings, other.settings)
            if found is not None:
                raise InputError(
                    p,
                    f"was made with other settings than {part_list[0].name} ({found.field}: "
                    f"{found.new!r} here, {found.old!r} there): rerun one of them with the other's settings "
                    "and --overwrite before merging",
                )
    for p in part_list:
        contents = read_jsonl(p)
        if contents.dropped_tail:
            raise InputError(
                p,
                "the part ends with an incomplete line: rerunning that rank's command drops it and answers "
                "that record again, keeping the others",
            )
        for r in contents.records:
            if id_key not in r:
                raise InputError(p, f"a record has no {id_key!r}")
            k = record_key(r[id_key])
            if k in seen and seen[k] != p:
                raise InputError(p, f"id {r[id_key]!r} is also in {seen[k]}")
            seen[k] = p
            by_key[k] = r  # within one part a later line (a retry) replaces the earlier one
        wanted = read_manifest(p)
        if wanted is not None:
            have = {record_key(r[id_key]) for r in contents.records}
            lacking = sum(1 for k in wanted if k not in have)
            if lacking and not allow_partial:
                raise InputError(
                    p,
                    f"incomplete part: lacks {lacking} of its {len(wanted)} records (rerunning that rank's "
                    "command answers just those, keeping the part's records; or merge with --allow-partial)",
                )
            if lacking:
                incomplete[p] = lacking
    records = list(by_key.values())
    if expected_ids is not None:
        missing = [i for i in expected_ids if record_key(i) not in by_key]
        if missing:
            raise InputError(out, f"{len(missing)} ids have no record in the parts (first: {missing[0]!r})")
        order = [record_key(i) for i in expected_ids]
        order_set = set(order)
        extra = [k for k in by_key if k not in order_set]
        records = [by_key[k] for k in order] + [by_key[k] for k in extra]
    if recorded and recorded[0] is not None:
        write_settings(out, recorded[0])
    else:
        settings_path(out).unlink(missing_ok=True)
    write_jsonl_atomic(out, records)
    logger.info("merged %d parts (%d records) into %s", len(part_list), len(records), out)
    return MergeResult(
        out=out,
        parts=part_list,
        records=len(records),
        missing=sum(incomplete.values()),
        incomplete=incomplete,
    )


# ----------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    """A progress report of :func:`run_jsonl`, sent after each item (and once at the start).

    Attributes:
        done: items of this run present in the output (skipped ones included).
        total: items of this run (this shard).
        skipped: items found already answered when the run started.
        failed: items recorded with an error by this run.
        last_id: the id just written (``None`` in the first report).
    """

    done: int
    total: int
    skipped: int
    failed: int
    last_id: str | None = None


@dataclass
class RunSummary:
    """The outcome of :func:`run_jsonl`.

    Attributes:
        out: the file written (the part file when sharded).
        shard: the shard that ran.
        total: items of this shard.
        skipped: items already answered in the output when the run started (kept).
        written: items written by this run (``failed`` of them with an error).
        retried: of ``written``, items whose earlier record carried an error (redone by this run).
        kept_failed: items recorded with an error that this run kept (``skip_failed``); counted in
            ``skipped``.
        failed: items written with an error by this run.
        failed_total: records of this shard carrying an error in the output (old runs included).
        complete: every item of the shard is in the output (the file was put in input order).
        merged: the merged file, when this run found every rank finished and merged them.
        merge_problem: why every rank is finished but the parts were not merged (e.g. their settings
            differ), else ``None``.
        seconds: wall time of the run.
    """

    out: Path
    shard: Shard
    total: int
    skipped: int = 0
    written: int = 0
    retried: int = 0
    kept_failed: int = 0
    failed: int = 0
    failed_total: int = 0
    complete: bool = False
    merged: Path | None = None
    merge_problem: str | None = None
    seconds: float = 0.0


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_jsonl`: everything written so far is on disk; ``summary`` says how much."""

    def __init__(self, summary: RunSummary) -> None:
        super().__init__(f"interrupted after {summary.written} new records")
        self.summary = summary


@dataclass
class JsonlRun(Generic[T]):
    """How to turn items into records.

    Attributes:
        key: the id of an item (a string or an int; unique in the input).
        process: the record of an item; must contain ``id_key``. May raise: see ``on_error``.
        on_error: the record of an item whose ``process`` raised (it must carry the error).
        group: items with the same group value are processed one after the other (e.g. questions on
            one clip, so the clip is prepared once) and, when sharded, by the same rank; groups keep
            the order of their first item.
        id_key: the field of a record holding the id.
        plan: called once, before the first ``process``, with the items about to be processed in the
            order ``process`` will get them (lets a processor prepare items ahead or batch them).
    """

    key: Callable[[T], Any]
    process: Callable[[T], Record]
    on_error: Callable[[T, BaseException], Record]
    group: Callable[[T], Hashable] | None = None
    id_key: str = "id"
    plan: Callable[[Sequence[T]], None] | None = None


def error_text(exc: BaseException) -> str:
    """The one-line reason recorded for a failed item (an :class:`InputError` reads as its message)."""
    if isinstance(exc, InputError):
        return str(exc)
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _order_for_processing(items: Sequence[T], group: Callable[[T], Hashable] | None) -> list[T]:
    if group is None:
        return list(items)
    buckets: dict[Hashable, list[T]] = {}
    for it in items:
        buckets.setdefault(group(it), []).append(it)
    return [it for bucket in buckets.values() for it in bucket]


def _count_lines(path: Path, *, start: int) -> int:
    """Complete (newline-terminated) lines of ``path`` after byte ``start``."""
    with open(path, "rb") as f:
        f.seek(start)
        return f.read().count(b"\n")


@_locks_output
def run_jsonl(
    items: Sequence[T],
    out: PathLike,
    spec: JsonlRun[T],
    *,
    shard: str | Shard | None = None,
    skip_failed: bool = False,
    auto_merge: bool = True,
    progress: Callable[[Progress], None] | None = None,
    settings: RunSettings | None = None,
    overwrite: bool = False,
) -> RunSummary:
    """Run ``spec.process`` over the items not yet in ``out``, appending one line per item.

    Args:
        items: all the items of the run, in input order (every rank passes the full list).
        out: the output JSONL (a rank of a sharded run writes ``OUT.part-I-of-N.jsonl``).
        spec: ids, processing and error records (:class:`JsonlRun`).
        shard: ``"I/N"`` or a :class:`Shard`; default torchrun's env, else unsharded.
        skip_failed: keep items whose record carries an error (by default they are redone and the new
            record replaces it).
        auto_merge: when sharded and every rank's part is complete, merge them into ``out``.
        progress: called with a :class:`Progress` after each item.
        settings: recorded beside the output before the first line (``<stem>.settings.json``); an
            output holding records is resumed only when its recorded settings are equal.
        overwrite: remove the output (and its settings and ids files) first: the run is a fresh one.

    Returns:
        A :class:`RunSummary`.

    Raises:
        InputError: duplicate ids in ``items``; an unreadable existing output.
        SettingsMismatch: ``settings`` given and the output was made with others (or with none
            recorded); see :func:`check_resume`.
        OutputBusy: another process holds the output's write lock (see :func:`output_lock`).
        RunInterrupted: Ctrl-C (a ``KeyboardInterrupt``); all lines written so far are kept.
    """
    t0 = time.perf_counter()
    sh = resolve_shard(shard)
    keys = [record_key(spec.key(it)) for it in items]
    seen_keys: set = set()
    for k in keys:
        if k in seen_keys:
            raise InputError(f"id {k}", "appears more than once in the input (ids must be unique)")
        seen_keys.add(k)

    groups = [spec.group(it) for it in items] if spec.group is not None and sh.is_sharded else None
    mine = [items[i] for i in sh.indices(len(items), groups)]
    mine_keys = [record_key(spec.key(it)) for it in mine]
    path = sh.part_path(out)
    if path.is_dir():
        raise InputError(path, "is a folder; give a .jsonl file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    if overwrite:
        remove_run_files(path)
    check_resume(path, settings)
    if settings is not None:
        from garvideo.run_settings import read_settings, write_settings

        old = read_settings(path)
        if old is None or old.to_dict() != settings.to_dict():
            write_settings(path, settings)
    if sh.is_sharded:
        write_manifest(path, mine_keys)

    existing: dict[str, Record] = {}
    valid_bytes = 0
    if path.exists():
        contents = read_jsonl(path)
        valid_bytes = contents.valid_bytes
        for r in contents.records:
            if spec.id_key in r:
                existing[record_key(r[spec.id_key])] = r  # a later line (a retry) wins
    failed_before = {k for k in mine_keys if k in existing and existing[k].get("error") is not None}
    done_keys = {k for k in mine_keys if k in existing and (skip_failed or k not in failed_before)}
    todo = _order_for_processing([it for it, k in zip(mine, mine_keys) if k not in done_keys], spec.group)
    summary = RunSummary(
        out=path,
        shard=sh,
        total=len(mine),
        skipped=len(done_keys),
        kept_failed=len(failed_before & done_keys),
    )
    if done_keys:
        logger.info("%s: %d of %d items already done, %d to go", path, len(done_keys), len(mine), len(todo))

    def report(last: str | None) -> None:
        if progress is not None:
            progress(
                Progress(
                    done=summary.skipped + summary.written,
                    total=summary.total,
                    skipped=summary.skipped,
                    failed=summary.failed,
                    last_id=last,
                )
            )

    report(None)
    if spec.plan is not None:
        spec.plan(todo)
    with open(path, "r+b" if path.exists() else "w+b") as f:
        f.truncate(valid_bytes)  # drop a line cut off by a crash
        f.seek(valid_bytes)
        try:
            for it in todo:
                try:
                    record = spec.process(it)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    logger.warning("item %s failed: %s", spec.key(it), error_text(exc))
                    logger.debug("item %s traceback", spec.key(it), exc_info=True)
                    record = spec.on_error(it, exc)
                    summary.failed += 1
                if spec.id_key not in record:
                    raise ValueError(f"a record lacks its {spec.id_key!r}: {sorted(record)}")
                f.write(dumps_line(record).encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
                existing[record_key(record[spec.id_key])] = record
                summary.written += 1
                if record_key(record[spec.id_key]) in failed_before:
                    summary.retried += 1
                report(record_key(record[spec.id_key]))
        except KeyboardInterrupt:
            # Ctrl-C can land after a line reached the file but before it was counted: count the
            # complete lines this run appended instead.
            f.flush()
            summary.written = _count_lines(path, start=valid_bytes)
            summary.seconds = time.perf_counter() - t0
            raise RunInterrupted(summary) from None

    summary.complete = all(k in existing for k in mine_keys)
    if summary.complete:
        ordered = [existing[k] for k in mine_keys]
        mine_set = set(mine_keys)
        extra = [r for k, r in existing.items() if k not in mine_set]
        if extra:
            logger.warning("%s: %d records have ids not in the input; kept at the end", path, len(extra))
        final = ordered + extra
        current = read_jsonl(path).records
        if current != final:
            write_jsonl_atomic(path, final)
    summary.failed_total = sum(1 for k in mine_keys if existing.get(k, {}).get("error") is not None)
    if sh.is_sharded and auto_merge and summary.complete:
        summary.merged, summary.merge_problem = _merge_if_all_done(
            out, keys, groups, sh.count, spec.id_key, held=path
        )
    summary.seconds = time.perf_counter() - t0
    return summary


def _merge_if_all_done(
    out: PathLike,
    keys: list[str],
    groups: Sequence[Hashable] | None,
    count: int,
    id_key: str,
    held: PathLike | None = None,
) -> tuple[Path | None, str | None]:
    """Merge the parts into ``out`` when every rank's part holds all of its ids: ``(out, None)``; else
    ``(None, None)``, or ``(None, why)`` when they are all finished but cannot be merged."""
    paths = part_paths(out, count)
    for i, p in enumerate(paths):
        if not p.exists():
            return None, None
        have = {record_key(r[id_key]) for r in read_jsonl(p).records if id_key in r}
        if any(keys[j] not in have for j in Shard(i, count).indices(len(keys), groups)):
            return None, None
    try:
        result = merge_shards(
            out, paths, id_key=id_key, expected_ids=keys, held=() if held is None else (held,)
        )
    except OutputBusy as exc:  # another rank finishing at the same moment is merging
        logger.info("not merging now: %s", exc)
        return None, None
    except InputError as exc:  # e.g. parts made with other settings: the ranks' parts stay as they are
        logger.warning("not merging the parts: %s", exc)
        return None, str(exc)
    return result.out, None
