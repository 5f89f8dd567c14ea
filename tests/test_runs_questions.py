"""Batch QA input: parsing and checking the questions file (garvideo.runs.questions), no model needed."""

from __future__ import annotations

import json

import pytest

from garvideo.errors import InputError
from garvideo.runs.questions import load_questions, plan_batch_qa


def write(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_questions_parse_with_paths_relative_to_the_file(tmp_path):
    rle = {"size": [4, 4], "counts": "04"}
    q = write(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "video": "clip.mp4", "mask": "m.png", "question": "What is <object0>?"},
            {"id": 2, "video": "/abs/v", "mask": ["m0.png", "m1.png"], "frame": 5, "question": "Q?",
             "options": ["x", "y", "z"]},
            {"id": "c", "video": "clip.mp4", "masks": [{"0": "m.png", "3": rle, "7": None}], "question": "Q?"},
        ],
    )  # fmt: skip
    a, b, c = load_questions(q)
    assert a.problem is None and a.video == tmp_path / "clip.mp4" and a.mask_files == (tmp_path / "m.png",)
    assert a.frame == 0 and a.options is None
    assert (
        str(b.video) == "/abs/v" and b.frame == 5 and len(b.mask_files) == 2 and b.options == ("x", "y", "z")
    )
    assert c.mask_files is None and c.frame_masks == ({0: tmp_path / "m.png", 3: rle, 7: None},)
    # questions on the same clip and masks share a clip key; others do not
    assert a.clip_key() != c.clip_key()
    a2 = load_questions(
        write(tmp_path / "q2.jsonl", [{"id": "z", "video": "clip.mp4", "mask": "m.png", "question": "Why?"}])
    )[0]
    assert a2.clip_key() == a.clip_key()
    other_root = load_questions(q, root=tmp_path / "elsewhere")[0]
    assert other_root.video == tmp_path / "elsewhere" / "clip.mp4"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ({"video": "v", "mask": "m", "question": ""}, "'question' must be a non-empty string"),
        ({"mask": "m", "question": "q"}, "'video' must be a path string"),
        ({"video": "v", "question": "q"}, "give either 'mask'"),
        ({"video": "v", "mask": "m", "masks": [{"0": "m"}], "question": "q"}, "give either 'mask'"),
        ({"video": "v", "mask": "m", "question": "q", "options": ["only one"]}, "2 to 26 entries"),
        ({"video": "v", "mask": "m", "question": "q", "frame": -1}, "'frame' must be"),
        ({"video": "v", "masks": [{"x": "m"}], "question": "q"}, "not an integer"),
        ({"video": "v", "masks": [], "question": "q"}, "non-empty list"),
    ],
)
def test_a_bad_line_becomes_a_recorded_problem(tmp_path, line, problem):
    q = load_questions(write(tmp_path / "q.jsonl", [{"id": 1, **line}]))[0]
    assert q.problem is not None and problem in q.problem


def test_file_level_errors_stop_before_any_work(tmp_path):
    with pytest.raises(InputError, match="no such questions file"):
        load_questions(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match=r"q.jsonl:2"):
        load_questions(write(tmp_path / "q.jsonl", ['{"id": 1, "video": "v"}', "{not json"]))
    with pytest.raises(InputError, match="'id' must be"):
        load_questions(write(tmp_path / "q.jsonl", [{"video": "v"}]))
    with pytest.raises(InputError, match="already used on line 1"):
        load_questions(write(tmp_path / "q.jsonl", [{"id": 1}, {"id": "1"}]))
    with pytest.raises(InputError, match="no questions"):
        load_questions(write(tmp_path / "q.jsonl", []))


def test_plan_batch_qa_refuses_to_overwrite_the_questions_and_checks_the_shard(tmp_path):
    q = write(tmp_path / "q.jsonl", [{"id": 1, "video": "v", "mask": "m", "question": "q"}])
    with pytest.raises(InputError, match="the video of the first question"):  # checked up front
        plan_batch_qa(q, tmp_path / "a.jsonl")
    (tmp_path / "v").mkdir()
    assert [x.id for x in plan_batch_qa(q, tmp_path / "a.jsonl", shard="1/2")] == [1]
    with pytest.raises(InputError, match="is the questions file itself"):
        plan_batch_qa(q, q)
    with pytest.raises(InputError, match="shard") as exc:
        plan_batch_qa(q, tmp_path / "a.jsonl", shard="3/2")
    assert exc.value.source == "shard"  # a field: the CLI says --shard
