"""Joining the parts of a sharded run (``OUT.part-I-of-N.jsonl``) into ``OUT``, in input order.

The merged file is byte for byte the one a single run writes; parts made with different recorded
settings, incomplete parts (their ids files list ids they lack) and ids found in two parts are refused.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from garvideo.errors import InputError, PathLike
from garvideo.runs.lines import Record, read_jsonl, record_key, write_jsonl_atomic
from garvideo.runs.locking import OutputLocked, output_lock
from garvideo.runs.settings import mismatch, read_settings, settings_path, write_settings
from garvideo.runs.shards import Shard, find_parts, part_paths, read_manifest

__all__ = ["MergeResult", "merge_if_all_done", "merge_shards"]

logger = logging.getLogger(__name__)


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
        OutputLocked: another process is writing ``out`` or a part.
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


def merge_if_all_done(
    out: PathLike,
    keys: list[str],
    groups: Sequence[Hashable] | None,
    count: int,
    id_key: str,
    held: PathLike | None = None,
) -> tuple[Path | None, str | None]:
    """Merge the parts into ``out`` when every rank's part holds all of its ids: ``(out, None)``; else
    ``(None, None)``, or ``(None, why)`` when they are all finished but cannot be merged.

    Args:
        out: the merged file.
        keys: the record keys of all the run's items, in input order.
        groups: the items' groups (as the ranks were assigned), or ``None``.
        count: the number of ranks.
        id_key: the field holding each record's id.
        held: a part whose lock the caller holds (the rank that just finished it).
    """
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
    except OutputLocked as exc:  # another rank finishing at the same moment is merging
        logger.info("not merging now: %s", exc)
        return None, None
    except InputError as exc:  # e.g. parts made with other settings: the ranks' parts stay as they are
        logger.warning("not merging the parts: %s", exc)
        return None, str(exc)
    return result.out, None
