"""Merging shard parts (garvideo.runs.merge): input order from the ids, incomplete parts, mixed settings."""

from __future__ import annotations

import pytest

from garvideo.errors import InputError
from garvideo.runs.lines import write_jsonl_atomic
from garvideo.runs.merge import merge_if_all_done, merge_shards
from garvideo.runs.settings import RunSettings, read_settings, write_settings
from garvideo.runs.shards import part_paths, write_manifest


def _parts(out, records_per_part, ids_per_part=None):
    parts = part_paths(out, len(records_per_part))
    for k, (p, recs) in enumerate(zip(parts, records_per_part)):
        write_jsonl_atomic(p, recs)
        if ids_per_part is not None:
            write_manifest(p, ids_per_part[k])
    return parts


def test_expected_ids_put_the_records_in_input_order(tmp_path):
    out = tmp_path / "preds.jsonl"
    _parts(out, [[{"id": 2}, {"id": 0}], [{"id": 1}]])
    result = merge_shards(out, expected_ids=[0, 1, 2])
    assert out.read_text() == '{"id": 0}\n{"id": 1}\n{"id": 2}\n' and result.records == 3
    with pytest.raises(InputError, match="1 ids have no record"):
        merge_shards(out, expected_ids=[0, 1, 2, 3])


def test_an_incomplete_part_is_refused_unless_partial_is_allowed(tmp_path):
    out = tmp_path / "preds.jsonl"
    parts = _parts(out, [[{"id": 0}], [{"id": 2}]], ids_per_part=[["0"], ["1", "2"]])
    with pytest.raises(InputError, match="incomplete part: lacks 1 of its 2 records"):
        merge_shards(out)
    result = merge_shards(out, allow_partial=True)
    assert result.partial and result.missing == 1 and result.incomplete == {parts[1]: 1}
    # merge_if_all_done: the ranks are not all finished, nothing is merged
    out.unlink()
    assert merge_if_all_done(out, ["0", "1", "2"], None, 2, "id") == (None, None) and not out.exists()


def test_parts_with_other_settings_are_not_merged(tmp_path):
    out = tmp_path / "preds.jsonl"
    parts = _parts(out, [[{"id": 0}], [{"id": 1}]])
    write_settings(parts[0], RunSettings({"num_frames": 2}, {}))
    write_settings(parts[1], RunSettings({"num_frames": 4}, {}))
    merged, why = merge_if_all_done(out, ["0", "1"], None, 2, "id")
    assert merged is None and why is not None and "num_frames: 4 here, 2 there" in why
    write_settings(parts[1], RunSettings({"num_frames": 2}, {}))
    assert merge_if_all_done(out, ["0", "1"], None, 2, "id") == (out, None)
    recorded = read_settings(out)
    assert recorded is not None and recorded.settings == {"num_frames": 2}  # the parts' settings go along
