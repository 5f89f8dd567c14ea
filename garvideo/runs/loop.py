"""The run loop (:func:`run_jsonl`): the one place batch QA and the evaluator write their outputs.

A *run* maps a list of input items to one JSON line each, keyed by the item's id:

* lines are written as produced (one ``write`` per line, flushed and ``fsync``'d), so Ctrl-C or a
  crash loses nothing already written;
* a rerun reads what is there and skips ids already answered (a last line cut off by a crash is
  detected — it has no newline — and dropped, so that item is simply redone); items recorded with an
  ``error`` are retried (``skip_failed`` keeps them);
* a run given its settings (:class:`garvideo.runs.settings.RunSettings`) records them beside the
  output (``<stem>.settings.json``) before the first line, and a rerun resumes only when they are
  equal (else :class:`garvideo.runs.settings.SettingsMismatch`); ``overwrite`` starts afresh;
* an item whose processing raises is recorded as a line with its ``error`` and the run goes on;
* when every item of the run is present, the file is rewritten (atomically) in input order, so the
  finished file does not depend on the processing order, interruptions or retries;
* sharding (:mod:`garvideo.runs.shards`): ``shard="I/N"`` or torchrun's ``RANK`` / ``WORLD_SIZE``
  pick this rank's items. Without a ``group`` they are a contiguous slice (as the official VideoRefer
  inference scripts' ``--num-chunks/--chunk-idx``); with one (e.g. the clip a question is on) every item
  of a group goes to the same rank, so a clip is tracked and encoded once, and the ranks get about equal
  numbers of items (:meth:`Shard.assign`). Each rank writes ``OUT.part-I-of-N.jsonl`` and
  ``OUT.part-I-of-N.ids.json`` (the ids it must answer, so a merge can tell a finished part from one
  cut short); the rank that finishes last merges the parts in input order
  (:func:`garvideo.runs.merge.merge_shards` with the ids), which gives exactly the file a single run writes; parts with
  different recorded settings are not merged;
* one writer per file: a run (and a merge) holds an advisory lock (``fcntl.flock`` on ``FILE.lock``)
  on every file it writes (:mod:`garvideo.runs.locking`); a second process gets
  :class:`~garvideo.runs.locking.OutputLocked` naming the holder's pid.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from garvideo.errors import InputError, PathLike
from garvideo.runs.lines import Record, dumps_line, read_jsonl, record_key, write_jsonl_atomic
from garvideo.runs.locking import output_lock
from garvideo.runs.merge import merge_if_all_done
from garvideo.runs.outputs import check_resume, remove_run_files
from garvideo.runs.records import error_text
from garvideo.runs.settings import RunSettings, read_settings, write_settings
from garvideo.runs.shards import Shard, resolve_shard, write_manifest

__all__ = ["JsonlRun", "Progress", "RunInterrupted", "RunSummary", "run_jsonl"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
        OutputLocked: another process holds the output's write lock (see
            :func:`garvideo.runs.locking.output_lock`).
        RunInterrupted: Ctrl-C (a ``KeyboardInterrupt``); all lines written so far are kept.
    """
    path = resolve_shard(shard).part_path(out)
    with output_lock(path):
        return _run_locked(
            items,
            out,
            spec,
            shard=shard,
            skip_failed=skip_failed,
            auto_merge=auto_merge,
            progress=progress,
            settings=settings,
            overwrite=overwrite,
        )


def _run_locked(
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
    """:func:`run_jsonl` under the write lock of the file it writes (the part file when sharded)."""
    t0 = time.perf_counter()
    sh = resolve_shard(shard)
    keys = [record_key(spec.key(it)) for it in items]
    seen_keys: set[str] = set()
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
        summary.merged, summary.merge_problem = merge_if_all_done(
            out, keys, groups, sh.count, spec.id_key, held=path
        )
    summary.seconds = time.perf_counter() - t0
    return summary
