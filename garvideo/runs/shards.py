"""Sharding a run: :class:`Shard` (``I/N`` or torchrun's ``RANK`` / ``WORLD_SIZE``), its part file
``OUT.part-I-of-N.jsonl`` and the part's ids file ``OUT.part-I-of-N.ids.json``.

Without groups a rank takes a contiguous slice of the items (as the official VideoRefer inference scripts'
``--num-chunks/--chunk-idx``); with groups (e.g. the clip a question is on) every item of a group goes to
the same rank and the ranks get about equal numbers of items (:meth:`Shard.assign`). The ids file lists
the ids a part must hold, so a merge can tell a finished part from one cut short.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from garvideo.errors import InputError, PathLike
from garvideo.runs.lines import record_key

__all__ = [
    "Shard",
    "find_parts",
    "manifest_path",
    "part_paths",
    "read_manifest",
    "resolve_shard",
    "write_manifest",
]

T = TypeVar("T")

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


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
            raise InputError("shard", f"shard {self.index}/{self.count} is out of range (need 0 <= I < N)")

    @property
    def is_sharded(self) -> bool:
        return self.count > 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``"I/N"`` (0-based rank ``I`` of ``N``)."""
        m = _SHARD_RE.match(text or "")
        if not m:
            raise InputError("shard", f"expected I/N (e.g. 0/4), got {text!r}")
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
    """The shard of this process: an explicit ``shard`` wins, then torchrun's env, else unsharded."""
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
