"""Sharding (garvideo.runs.shards): contiguous slices, whole groups balanced over the ranks, ``I/N``."""

from __future__ import annotations

import json

import pytest

from garvideo.errors import InputError
from garvideo.runs.shards import Shard, find_parts, manifest_path, part_paths, read_manifest, write_manifest


def test_shard_by_group_is_balanced_and_reduces_to_slices():
    # groups of one item: exactly the contiguous slices
    for n, count in [(10, 3), (7, 7), (5, 2), (3, 4)]:
        for i in range(count):
            assert Shard(i, count).indices(n, list(range(n))) == list(range(*Shard(i, count).bounds(n)))
    # clips of 1 to 6 questions: whole clips, consecutive clips together, balanced to half a clip
    sizes = [5, 1, 6, 2, 3, 3, 4, 1, 5, 2]
    groups = [g for g, size in enumerate(sizes) for _ in range(size)]
    n, count = len(groups), 4
    ranks = Shard(0, count).assign(groups)
    assert all(len({ranks[i] for i in range(n) if groups[i] == g}) == 1 for g in range(len(sizes)))
    assert ranks == sorted(ranks)
    loads = [ranks.count(r) for r in range(count)]
    assert sum(loads) == n and max(abs(x - n / count) for x in loads) <= max(sizes) / 2 + 1
    assert [i for i in range(n) if ranks[i] == 2] == Shard(2, count).indices(n, groups)


def test_shard_slices_cover_every_item_once():
    for n in (0, 1, 5, 12, 13):
        for count in (1, 2, 3, 5, 8):
            got = [i for k in range(count) for i in Shard(k, count).select(list(range(n)))]
            assert got == list(range(n)), (n, count)
    assert Shard.parse(" 2 / 5 ") == Shard(2, 5)
    for bad in ("5/5", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(InputError):
            Shard.parse(bad)
    assert Shard.from_env({}) is None


def test_part_paths_and_ids_files(tmp_path):
    out = tmp_path / "preds.jsonl"
    assert Shard().part_path(out) == out  # unsharded: the output itself
    parts = part_paths(out, 2)
    assert [p.name for p in parts] == ["preds.part-0-of-2.jsonl", "preds.part-1-of-2.jsonl"]
    assert manifest_path(parts[1]).name == "preds.part-1-of-2.ids.json"
    assert read_manifest(parts[0]) is None  # no ids file: a part written before there were
    write_manifest(parts[0], ["0", "1"])
    assert json.loads(manifest_path(parts[0]).read_text()) == {"ids": ["0", "1"]}
    assert read_manifest(parts[0]) == ["0", "1"]
    manifest_path(parts[1]).write_text("{not json")
    with pytest.raises(InputError, match="unreadable ids file"):
        read_manifest(parts[1])
    for p in parts:
        p.write_text("")
    assert find_parts(out) == parts


def test_shard_errors_name_the_field():
    with pytest.raises(InputError) as exc:
        Shard.parse("3/2")
    assert exc.value.source == "shard" and "out of range" in exc.value.problem
    with pytest.raises(InputError) as exc:
        Shard.parse("x")
    assert exc.value.source == "shard" and "expected I/N" in exc.value.problem
