"""``garvideo batch`` end to end on the synthetic sample clip with the tiny random GAR.

Outputs of two runs are compared with ``timings`` (wall times) stripped, everything else byte for byte.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from garvideo.cli import app
from garvideo.masks import rle_encode
from garvideo.runs.lines import read_jsonl
from garvideo.runs.records import ANSWER_KEYS

runner = CliRunner()


@pytest.fixture()
def questions(sample_clip, tmp_path):
    c = sample_clip
    lines = [
        {"id": "mc", "video": str(c.video_path), "mask": str(c.prompt_mask),
         "question": "What is <object0> doing near <object1>?", "options": ["moving", "sleeping", "eating"]},
        {"id": "free", "video": str(c.video_path), "mask": str(c.prompt_mask), "question": "Describe <object1>."},
        {"id": "folder", "video": str(c.frames_dir), "mask": [str(c.object_masks[0])], "frame": 0,
         "question": "Where is <object0> going?", "options": ["left", "right"]},
        {"id": "given", "video": str(c.frames_dir),
         "masks": [{"0": str(c.object_masks[0]), "10": rle_encode(c.gt(10)[0]), "20": None}],
         "question": "What is <object0>?"},
        {"id": "missing-video", "video": str(tmp_path / "nope.mp4"), "mask": str(c.prompt_mask), "question": "Q?"},
        {"id": "no-question", "video": str(c.video_path), "mask": str(c.prompt_mask)},
        {"id": "bad-ref", "video": str(c.frames_dir), "mask": str(c.object_masks[1]), "question": "Is <object2> here?"},
    ]  # fmt: skip
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in lines))
    return path


def _batch(args, tiny_model_dir):
    args = [*args, "--model", str(tiny_model_dir), "--tracker", "static", "-k", "1", "--max-new-tokens", "4"]
    res = runner.invoke(app, ["batch", *args, "--json"], terminal_width=200)
    summary = json.loads(res.output.strip().splitlines()[0])
    # exit 3: the run finished with some questions failed (0: none failed)
    assert res.exit_code == (3 if summary["failed"] else 0), (res.output, res.exception)
    return summary


def test_batch_answers_shares_clips_records_errors_and_resumes(questions, tiny_model_dir, tmp_path, stripped):
    out = tmp_path / "answers.jsonl"
    summary = _batch([str(questions), "--out", str(out)], tiny_model_dir)
    assert (
        summary["total"] == 7 and summary["written"] == 7 and summary["failed"] == 3 and summary["complete"]
    )

    recs = {r["id"]: r for r in read_jsonl(out).records}
    assert list(recs) == ["mc", "free", "folder", "given", "missing-video", "no-question", "bad-ref"]
    for r in recs.values():
        assert list(r) == list(ANSWER_KEYS)
    for qid in ("mc", "free", "folder", "given"):
        assert recs[qid]["error"] is None and len(recs[qid]["frames"]) == 1, recs[qid]
    assert recs["mc"]["answer"] in (None, "A", "B", "C")  # the option letter (None: no letter in the output)
    assert recs["free"]["answer"] == recs["free"]["pred"]  # free-form: the answer is the text
    # "free" shares "mc"'s clip: no tracking, encoding or prefix again
    assert recs["free"]["timings"]["prepare"] == 0.0 and recs["free"]["timings"]["prefill"] == 0.0
    assert recs["mc"]["timings"]["prepare"] > 0.0
    assert set(recs["given"]["frames"]) <= {0, 10, 20}  # keyframes among the given frames
    assert "no such" in recs["missing-video"]["error"] and recs["missing-video"]["answer"] is None
    assert "'question' must be a non-empty string" in recs["no-question"]["error"]
    assert "<object2>" in recs["bad-ref"]["error"]

    # a crash after 3 lines: the rerun answers only the rest and ends with the same file
    reference = stripped(out)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:10])
    again = _batch([str(questions), "--out", str(out)], tiny_model_dir)
    assert again["skipped"] == 3 and again["written"] == 4
    assert out.read_text().splitlines(keepends=True)[:3] == lines[:3]
    assert stripped(out) == reference

    # sharded over two "ranks" (torchrun's env), the last one merges: the same file as one run
    sharded = tmp_path / "sharded.jsonl"
    for rank in (0, 1):
        res = runner.invoke(
            app,
            ["batch", str(questions), "--out", str(sharded), "--model", str(tiny_model_dir), "--tracker", "static",
             "-k", "1", "--max-new-tokens", "4", "--json"],
            env={"RANK": str(rank), "WORLD_SIZE": "2"},
        )  # fmt: skip
        assert res.exit_code in (0, 3), (res.output, res.exception)  # 3: the failing questions
    assert (tmp_path / "sharded.part-0-of-2.jsonl").exists() and (
        tmp_path / "sharded.part-1-of-2.jsonl"
    ).exists()
    assert stripped(sharded) == reference
    sharded.unlink()
    merged = runner.invoke(app, ["merge", str(sharded)])
    assert merged.exit_code == 0 and "merged 2 parts (7 records)" in merged.output
    assert stripped(sharded) == reference


def test_a_malformed_questions_file_fails_before_the_model_loads(tmp_path):
    from garvideo.cli import main

    q = tmp_path / "q.jsonl"
    q.write_text('{"id": 1, "video": "v", "mask": "m", "question": "q"}\n{"id": 2,\n')
    with pytest.raises(SystemExit) as info:
        main(["batch", str(q), "--out", str(tmp_path / "a.jsonl"), "--model", str(tmp_path / "no-model")])
    assert info.value.code == 2
    assert not (tmp_path / "a.jsonl").exists()
