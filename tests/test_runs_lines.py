"""JSONL lines (garvideo.runs.lines): the exact bytes written, a cut-off last line, atomic rewrites, id keys."""

from __future__ import annotations

import pytest

from garvideo.errors import InputError
from garvideo.runs.lines import dumps_line, read_jsonl, record_key, write_jsonl_atomic


def test_dumps_line_is_one_utf8_json_line():
    assert (
        dumps_line({"id": 1, "pred": "café", "frames": [0, 2]})
        == '{"id": 1, "pred": "café", "frames": [0, 2]}\n'
    )


def test_read_drops_a_cut_off_last_line_and_says_where_the_good_part_ends(tmp_path):
    p = tmp_path / "o.jsonl"
    p.write_bytes(b'{"id": 1}\n\n{"id": 2}\n{"id": 3, "pr')
    got = read_jsonl(p)
    assert got.records == [{"id": 1}, {"id": 2}] and got.dropped_tail
    assert got.valid_bytes == len(b'{"id": 1}\n\n{"id": 2}\n')
    with pytest.raises(InputError, match=r"o.jsonl:4"):  # a questions file may not end cut off
        read_jsonl(p, tolerate_truncated_tail=False)
    p.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(InputError, match="each line must be a JSON object"):
        read_jsonl(p)


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "sub" / "o.jsonl"
    write_jsonl_atomic(p, [{"id": "a"}, {"id": "b"}])
    write_jsonl_atomic(p, [{"id": "c"}])
    assert p.read_text() == '{"id": "c"}\n' and [x.name for x in p.parent.iterdir()] == ["o.jsonl"]


def test_record_keys_make_0_and_the_string_0_one_id():
    assert record_key(0) == record_key("0") == "0"
    for bad in (True, 1.5, None, ["x"]):
        with pytest.raises(TypeError):
            record_key(bad)
