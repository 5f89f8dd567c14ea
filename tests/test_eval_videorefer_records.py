"""VideoRefer-Bench-Q records: loading, checking, and the masks each mode gives (no model needed)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from garvideo.errors import InputError
from garvideo.eval.videorefer_q import (
    load_benchmark,
    parse_record,
    record_masks,
    select_records,
)
from garvideo.masks import rle_encode

MINI = "data/videorefer-mini/VideoRefer-Bench-Q-mini.json"


@pytest.fixture(scope="module")
def mini(shared_dir):
    return load_benchmark(shared_dir / MINI)


@pytest.fixture(scope="module")
def video_root(shared_dir):
    return shared_dir / "data" / "davis2016"


def _square_rle(h=6, w=8, box=(1, 2, 4, 5)):
    m = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m, rle_encode(m)


def _record(**kw):
    _, rle = _square_rle()
    r = {
        "id": 7,
        "video": "clips/x",
        "Question": "Is <object3><region> left of <object1><region>? And <object3><region>?",
        "type": "Relationship Questions",
        "options": ["(A) Yes", "(B) No"],
        "Answer": "(A) Yes",
        "frame_idx": "2",
        "annotation": [
            {"0": {"segmentation": rle}, "2": {"segmentation": rle}},
            {"2": {"segmentation": rle}},
        ],
    }
    r.update(kw)
    return r


def test_the_mini_file_parses(mini, video_root):
    assert len(mini) == 12
    for raw in mini:
        q = parse_record(raw, video_root)
        assert q.question.count("<object0>") == 1 and "<region>" not in q.question
        assert q.options and not q.options[0].startswith("(")
        assert q.video_dir.is_dir() and q.frame_idx == int(raw["frame_idx"])
        assert len(q.annotation) == 1 and len(q.annotation[0]) == 32
    q0 = parse_record(mini[0], video_root)
    assert q0.question == "What color is the beak of <object0>?"
    assert q0.options == ("Black", "Red", "Yellow", "White")
    assert select_records(mini, types=["Future Predictions"]) == [mini[3], mini[10]]
    assert select_records(mini, limit=2) == mini[:2]
    with pytest.raises(InputError, match="unknown type"):
        select_records(mini, types=["Basic"])


def test_object_tags_map_in_order_of_appearance(tmp_path):
    q = parse_record(_record(), tmp_path)
    assert q.question == "Is <object0> left of <object1>? And <object0>?"
    assert q.object_tags == ("<object3>", "<object1>")
    assert q.options == ("Yes", "No") and q.frame_idx == 2
    assert list(q.annotation[0]) == [0, 2]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"type": "Counting Questions"}, "unknown type"),
        ({"annotation": [{"2": None}]}, "has 1 objects but the question refers to 2"),
        ({"options": ["(A) Yes", "(C) No"]}, "expected '\\(B\\) ...'"),
        ({"options": ["Yes", "No"]}, "expected '\\(A\\) ...'"),
        ({"frame_idx": "two"}, "frame_idx"),
        ({"Question": "What is this?"}, "no <objectN>"),
        ({"annotation": [{"x": None}, {"2": None}]}, "not an index"),
        ({"annotation": [{"2": {"segmentation": {"counts": "abc"}}}, {"2": None}]}, "malformed COCO RLE"),
        ({"video": ""}, "'video' must be"),
    ],
)
def test_bad_records_are_rejected_with_their_id(tmp_path, change, reason):
    with pytest.raises(InputError, match=reason) as info:
        parse_record(_record(**change), tmp_path)
    assert info.value.source.startswith("record 7")


def test_single_mode_uses_frame_idx_or_the_nearest_annotated_frame(tmp_path):
    m, rle = _square_rle()
    q = parse_record(_record(), tmp_path)
    rm = record_masks(q, "single", num_frames=5, size=(6, 8))
    assert rm.frame == 2 and len(rm.masks) == 2 and rm.frame_masks is None and not rm.notes
    assert np.array_equal(rm.masks[0], m)

    ann = [{"0": {"segmentation": rle}, "2": {"segmentation": None}, "4": {"segmentation": rle}},
           {"0": {"segmentation": rle}, "2": {"segmentation": rle}, "4": {"segmentation": rle}}]  # fmt: skip
    q = parse_record(_record(annotation=ann, frame_idx="2"), tmp_path)
    rm = record_masks(q, "single", num_frames=5, size=(6, 8))
    assert rm.frame == 0  # 0 and 4 are both 2 away: the earlier wins
    assert "used the nearest annotated frame 0" in rm.notes[0]

    lonely = [{"0": {"segmentation": rle}}, {"4": {"segmentation": rle}}]
    q = parse_record(_record(annotation=lonely), tmp_path)
    with pytest.raises(InputError, match="no annotated frame has a non-empty mask for every object"):
        record_masks(q, "single", num_frames=5, size=(6, 8))


def test_multi_mode_gives_every_annotated_mask(tmp_path):
    _, rle = _square_rle()
    ann = [{"0": {"segmentation": rle}, "3": None}, {"1": {"segmentation": rle}}]
    q = parse_record(_record(annotation=ann), tmp_path)
    rm = record_masks(q, "multi", num_frames=5, size=(6, 8))
    assert rm.masks is None and [sorted(fm) for fm in rm.frame_masks] == [[0, 3], [1]]
    assert rm.frame_masks[0][3] is None and rm.frame_masks[0][0].sum() == 9


def test_frame_keys_beyond_the_clip_and_bad_rles_fail(tmp_path):
    q = parse_record(_record(), tmp_path)
    with pytest.raises(InputError, match="frame key 2 beyond the 2 frames"):
        record_masks(q, "multi", num_frames=2, size=(6, 8))
    with pytest.raises(InputError, match="but the video frames are 9x6"):
        record_masks(q, "single", num_frames=5, size=(6, 9))
    bad = _record(annotation=[{"2": {"segmentation": {"size": [6, 8], "counts": [1, 2]}}}, {"2": None}])
    with pytest.raises(InputError, match="malformed COCO RLE"):
        record_masks(parse_record(bad, tmp_path), "multi", num_frames=5, size=(6, 8))


def test_the_mini_record_with_a_null_segmentation(mini, video_root):
    q = parse_record(mini[3], video_root)
    rm = record_masks(q, "multi", num_frames=40, size=(480, 854))
    assert rm.frame_masks[0][38] is None and sum(m is not None for m in rm.frame_masks[0].values()) == 31
    rm = record_masks(q, "single", num_frames=40, size=(480, 854))
    assert rm.frame == 12 and rm.masks[0].any()


def test_malformed_benchmark_files_fail_before_any_work(tmp_path, mini):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": 0,')
    with pytest.raises(InputError, match="not a valid JSON file"):
        load_benchmark(bad)
    bad.write_text('{"id": 0}')
    with pytest.raises(InputError, match="expected a JSON list"):
        load_benchmark(bad)
    dup = copy.deepcopy(mini[:2])
    dup[1]["id"] = dup[0]["id"]
    bad.write_text(json.dumps(dup))
    with pytest.raises(InputError, match="appears in records 0 and 1"):
        load_benchmark(bad)
    with pytest.raises(InputError, match="no such benchmark file"):
        load_benchmark(tmp_path / "missing.json")


def test_records_share_a_clip_when_the_masks_used_are_the_same(mini, video_root):
    q2, q3 = parse_record(mini[2], video_root), parse_record(mini[3], video_root)
    # same clip and same mask at frame_idx; record 3 differs only by a null on frame 38
    assert q2.clip_key("single") == q3.clip_key("single")
    assert q2.clip_key("multi") != q3.clip_key("multi")
    q0, q1 = parse_record(mini[0], video_root), parse_record(mini[1], video_root)
    assert q0.clip_key("multi") == q1.clip_key("multi") and q0.clip_key("single") != q2.clip_key("single")
    moved = copy.deepcopy(mini[2])
    moved["frame_idx"] = "13"
    assert parse_record(moved, video_root).clip_key("single") != q2.clip_key("single")
