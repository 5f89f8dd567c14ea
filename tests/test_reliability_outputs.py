"""No output corrupted or silently lost: exact RLE decoding, the scorer reading every line, merge
refusing incomplete parts, one writer per output file, exit codes of batch / eval runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from garvideo.errors import InputError
from garvideo.masks import rle_decode, rle_encode, rle_string_counts
from garvideo.runs.lines import read_jsonl
from garvideo.runs.locking import OutputLocked, lock_path, output_lock
from garvideo.runs.loop import JsonlRun, run_jsonl

H, W = 480, 854  # 409,920 pixels, as in the issue


# -- RLE ---------------------------------------------------------------------------------------------
def test_rle_counts_must_cover_every_pixel():
    m = np.zeros((H, W), bool)
    m[100:200, 300:500] = True
    good = rle_encode(m)
    assert sum(rle_string_counts(good["counts"])) == H * W
    assert (rle_decode(good) == m).all()
    short_str = rle_encode(np.ones((30, 50), bool))["counts"]  # 1,500 pixels of counts, size says more
    for counts in ([100, 1400], short_str, [H * W, 1]):
        with pytest.raises(InputError, match="counts"):
            rle_decode({"size": [H, W], "counts": counts}, source="m.json")


def test_rle_string_counts_match_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 80, 2))
        m = rng.random((h, w)) < rng.random()
        enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert sum(rle_string_counts(enc["counts"])) == h * w
        assert int(mask_utils.area(enc)) == int(m.sum())


def test_eval_record_with_short_rle_fails_the_record(tmp_path):
    from garvideo.eval.videorefer_q import _decode

    short = rle_encode(np.ones((30, 50), bool))["counts"]  # string counts of 1,500 pixels
    with pytest.raises(InputError, match="counts cover 1500 pixels but size 480x854 has 409920"):
        _decode({"size": [H, W], "counts": short}, (H, W), "record 1")


# -- the scorer ---------------------------------------------------------------------------------------
def _pred(i: int, ok: bool) -> dict:
    return {"video": f"v{i}", "Answer": "(A) yes", "pred": "(A)" if ok else "(B)", "type": "Basic Questions"}


def test_score_reads_a_last_line_without_newline(tmp_path, run_cli):
    p = tmp_path / "preds.jsonl"
    p.write_text("\n".join(json.dumps(_pred(i, i % 2 == 0)) for i in range(12)))  # no final newline
    code, out, err = run_cli("eval", "score", p, "--json")
    assert code == 0, err
    assert json.loads(out)["overall"] == {"correct": 6, "total": 12, "accuracy": 0.5}
    assert err == ""


def test_score_refuses_an_empty_file(tmp_path, run_cli):
    p = tmp_path / "preds.jsonl"
    p.write_text("")
    code, out, err = run_cli("eval", "score", p)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: {p}: no predictions in the file (it is empty)"]


# -- merge --------------------------------------------------------------------------------------------
def _spec(stop_after: int | None = None) -> JsonlRun:
    calls = {"n": 0}

    def process(i: int) -> dict:
        calls["n"] += 1
        if stop_after is not None and calls["n"] > stop_after:
            raise KeyboardInterrupt
        return {"id": i, **_pred(i, i % 2 == 0)}

    return JsonlRun(key=lambda i: i, process=process, on_error=lambda i, e: {"id": i, "error": str(e)})


def _sharded_with_cut_part(tmp_path: Path) -> Path:
    out = tmp_path / "preds.jsonl"
    items = list(range(8))
    run_jsonl(items, out, _spec(), shard="0/2")
    with pytest.raises(KeyboardInterrupt):
        run_jsonl(items, out, _spec(stop_after=2), shard="1/2")  # rank 1 killed after 2 of its 4
    return out


def test_merge_refuses_an_incomplete_part(tmp_path, run_cli):
    out = _sharded_with_cut_part(tmp_path)
    code, _stdout, err = run_cli("merge", out)
    part = tmp_path / "preds.part-1-of-2.jsonl"
    assert code == 2 and not out.exists()
    assert err.strip().splitlines() == [
        (
            f"error: {part}: incomplete part: lacks 2 of its 4 records (rerunning that rank's command "
            "answers just those, keeping the part's records; or merge with --allow-partial)"
        )
    ]


def test_merge_allow_partial_marks_the_scores_partial(tmp_path, run_cli):
    out = _sharded_with_cut_part(tmp_path)
    code, stdout, err = run_cli("merge", out, "--allow-partial", "--json")
    assert code == 0, err
    info = json.loads(stdout)
    assert info["records"] == 6 and info["missing"] == 2
    assert info["scores"]["partial"] is True and info["scores"]["missing"] == 2
    sidecar = json.loads((tmp_path / "preds.scores.json").read_text())
    assert sidecar["partial"] is True and sidecar["missing"] == 2
    assert "**Partial**: 2 questions" in (tmp_path / "preds.scores.md").read_text()
    code, stdout, err = run_cli("merge", out, "--allow-partial")
    assert code == 0 and "PARTIAL" in stdout
    assert "partial: 2 records missing (preds.part-1-of-2.jsonl lacks 2)" in err


# -- one writer per output ----------------------------------------------------------------------------
_HOLD = """
import sys, time
from garvideo.runs.locking import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture()
def holder():
    """``holder(path)``: a second process holding the write lock of ``path`` (killed at the end)."""
    procs = []

    def start(path: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "locked"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_second_writer_is_refused_with_the_pid(tmp_path, holder):
    out = tmp_path / "answers.jsonl"
    p = holder(out)
    with pytest.raises(OutputLocked, match=f"is being written by another process \\(pid {p.pid}\\)"):
        run_jsonl([1, 2], out, _spec())
    assert not out.exists()
    p.kill()
    p.wait()
    summary = run_jsonl([1, 2], out, _spec())  # the kernel dropped the dead holder's lock
    assert summary.complete and len(read_jsonl(out).records) == 2
    assert not lock_path(out).exists()


def test_batch_second_writer_exits_2_before_the_model(tmp_path, holder, run_cli, sample_clip):
    qs = tmp_path / "q.jsonl"
    qs.write_text(
        json.dumps({"id": 1, "video": str(sample_clip.video_path), "mask": str(sample_clip.prompt_mask),
                    "question": "What is <object0>?"}) + "\n"
    )  # fmt: skip
    out = tmp_path / "answers.jsonl"
    p = holder(out)
    code, _stdout, err = run_cli("batch", qs, "--out", out, "--model", tmp_path / "no-model")
    assert code == 2
    assert err.strip().splitlines() == [f"error: {out}: is being written by another process (pid {p.pid})"]


def test_merge_refused_while_a_part_is_written(tmp_path, holder, run_cli):
    out = tmp_path / "preds.jsonl"
    run_jsonl(list(range(4)), out, _spec(), shard="0/2", auto_merge=False)
    run_jsonl(list(range(4)), out, _spec(), shard="1/2", auto_merge=False)
    p = holder(tmp_path / "preds.part-1-of-2.jsonl")
    code, _, err = run_cli("merge", out)
    assert code == 2 and f"is being written by another process (pid {p.pid})" in err


_WRITER = """
import sys, time
from garvideo.runs.locking import OutputLocked
from garvideo.runs.loop import JsonlRun, run_jsonl
def slow(i):
    time.sleep(0.05)
    return {"id": i, "text": "x" * 200}
spec = JsonlRun(key=lambda i: i, process=slow, on_error=lambda i, e: {"id": i, "error": str(e)})
try:
    run_jsonl(list(range(40)), sys.argv[1], spec)
except OutputLocked as exc:
    print("busy:", exc, flush=True)
    sys.exit(2)
"""


def test_two_writers_never_splice_lines(tmp_path):
    out = tmp_path / "answers.jsonl"
    a = subprocess.Popen([sys.executable, "-c", _WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not lock_path(out).exists() and time.time() < deadline:
        time.sleep(0.02)
    b = subprocess.run(
        [sys.executable, "-c", _WRITER, str(out)], capture_output=True, text=True, timeout=120, check=False
    )
    a.communicate(timeout=120)
    assert a.returncode == 0 and b.returncode == 2, (b.stdout, b.stderr)
    assert f"(pid {a.pid})" in b.stdout
    recs = read_jsonl(out, tolerate_truncated_tail=False).records
    assert [r["id"] for r in recs] == list(range(40))


def test_lock_is_reentrant_across_files_not_within_one(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with output_lock(a), output_lock(b):
        assert lock_path(a).read_text().strip() == str(os.getpid())
    assert not lock_path(a).exists() and not lock_path(b).exists()


# -- outputs checked before work, exit codes of runs ----------------------------------------------------
def _questions(tmp_path: Path, lines: list[dict]) -> Path:
    qs = tmp_path / "questions.jsonl"
    qs.write_text("".join(json.dumps(q) + "\n" for q in lines))
    return qs


def test_batch_unwritable_out_exits_2_before_the_model(tmp_path, run_cli, sample_clip):
    qs = _questions(tmp_path, [{"id": 1, "video": str(sample_clip.video_path),
                                "mask": str(sample_clip.prompt_mask), "question": "Q?"}])  # fmt: skip
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "answers.jsonl"  # its folder is a file
    code, _, err = run_cli("batch", qs, "--out", out, "--model", tmp_path / "no-model")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: cannot be written"), err


def test_batch_errors_name_the_questions_file(tmp_path, run_cli):
    qs = _questions(tmp_path, [{"id": 1, "video": "v.mp4", "mask": "m.png", "question": "Q?"},
                               {"video": "v.mp4", "mask": "m.png", "question": "Q?"}])  # fmt: skip
    code, _, err = run_cli("batch", qs, "--out", tmp_path / "a.jsonl")
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {qs}:2: 'id' must be a non-empty string or an integer, got None"
    ]


def test_batch_where_every_question_fails_exits_2(tmp_path, run_cli, tiny_model_dir, sample_clip):
    qs = _questions(tmp_path, [{"id": i, "video": str(sample_clip.video_path),
                                "mask": str(tmp_path / "nope.png"), "question": "Q?"} for i in range(2)])  # fmt: skip
    out = tmp_path / "a.jsonl"
    code, stdout, err = run_cli(
        "batch", qs, "--out", out, "--model", tiny_model_dir, "--tracker", "static", "--json"
    )
    assert code == 2
    assert json.loads(stdout)["failed"] == 2
    assert err.strip().splitlines()[-1].startswith(f"error: {out}: all 2 questions failed")
    assert "fix the cause: rerunning the same command retries them" in err
    # a video that is not there is refused before any work (the first question's)
    missing = _questions(tmp_path, [{"id": 0, "video": str(tmp_path / "nope.mp4"),
                                     "mask": str(sample_clip.prompt_mask), "question": "Q?"}])  # fmt: skip
    code, _, err = run_cli("batch", missing, "--out", tmp_path / "b.jsonl", "--model", tmp_path / "no-model")
    assert (
        code == 2 and "the video of the first question (id 0)" in err and not (tmp_path / "b.jsonl").exists()
    )


def test_eval_where_every_record_fails_exits_2(tmp_path, run_cli, tiny_model_dir, shared_dir):
    records = json.loads((shared_dir / "data/videorefer-mini/VideoRefer-Bench-Q-mini.json").read_text())[:2]
    for r in records:
        r["type"] = "Counting Questions"  # not a type of the benchmark: every record fails
    data = tmp_path / "bench.json"
    data.write_text(json.dumps(records))
    out = tmp_path / "preds.jsonl"
    code, stdout, err = run_cli(
        "eval", "videorefer-q", "--data", data, "--video-root", shared_dir / "data" / "davis2016", "--out", out,
        "--model", tiny_model_dir, "--tracker", "static", "-k", "1", "--json",
    )  # fmt: skip
    assert code == 2
    assert json.loads(stdout)["failed"] == 2
    assert err.strip().splitlines()[-1].startswith(f"error: {out}: all 2 records failed")
