"""Prefetching and batched answering (garvideo.runs.engine.QuestionRunner) give the serial run's records.

Batch QA on the synthetic clip and VideoRefer-Bench-Q on the shared mini file, with the tiny random GAR
in float32: ``--prefetch 2`` and ``--batch-size 4`` (and both) must write byte-identical files to the
serial run (``prefetch=0, batch_size=1``) once ``timings`` (wall times) are stripped, bad items
included; sharding by clip, Ctrl-C and resume must not change that either.
"""

from __future__ import annotations

import json
import logging
import threading

import pytest
from typer.testing import CliRunner

from garvideo.cli import app
from garvideo.errors import InputError
from garvideo.eval.videorefer_q import run_videorefer_q
from garvideo.runs.batch_qa import run_batch_qa
from garvideo.runs.engine import QuestionRunner, RunnerStats
from garvideo.runs.lines import read_jsonl
from garvideo.runs.loop import RunInterrupted

MINI = "data/videorefer-mini/VideoRefer-Bench-Q-mini.json"
runner = CliRunner()


def _prepare_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("garvideo-prepare")]


@pytest.fixture(scope="module")
def gv(tiny_model_dir):
    from garvideo.pipeline import GarVideo

    return GarVideo(str(tiny_model_dir), tracker="static", num_frames=1, max_new_tokens=4, dtype="float32")


@pytest.fixture(scope="module")
def flow_gv(tiny_model_dir):
    from garvideo.pipeline import GarVideo

    return GarVideo(str(tiny_model_dir), tracker="flow", num_frames=2, max_new_tokens=4, dtype="float32")


@pytest.fixture()
def questions(sample_clip, tmp_path):
    """Questions on three clips (two share the video but not the masks), with three bad ones between."""
    c = sample_clip
    v, d = str(c.video_path), str(c.frames_dir)
    lines = [
        {"id": "a1", "video": v, "mask": str(c.prompt_mask), "question": "What is <object0> doing?",
         "options": ["moving", "sleeping", "eating"]},
        {"id": "a2", "video": v, "mask": str(c.prompt_mask), "question": "Describe <object1>."},
        {"id": "missing", "video": str(tmp_path / "nope.mp4"), "mask": str(c.prompt_mask), "question": "Q?"},
        {"id": "a3", "video": v, "mask": str(c.prompt_mask), "question": "Is <object0> near <object1>?",
         "options": ["yes", "no"]},
        {"id": "b1", "video": d, "mask": [str(c.object_masks[0])], "question": "Where is <object0> going?",
         "options": ["left", "right"]},
        {"id": "bad-ref", "video": d, "mask": [str(c.object_masks[0])], "question": "Is <object3> here?"},
        {"id": "b2", "video": d, "mask": [str(c.object_masks[0])], "question": "What colour is <object0>?"},
        {"id": "no-question", "video": v, "mask": str(c.prompt_mask)},
        {"id": "c1", "video": v, "mask": [str(c.object_masks[1])], "frame": 0, "question": "What is <object0>?"},
    ]  # fmt: skip
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in lines))
    return path


def test_batch_qa_prefetch_batches_and_ctrl_c_match_the_serial_run(questions, flow_gv, tmp_path, stripped):
    serial_stats = RunnerStats()
    serial = tmp_path / "serial.jsonl"
    run_batch_qa(questions, serial, flow_gv, prefetch=0, batch_size=1, stats=serial_stats)
    reference = stripped(serial)
    recs = {r["id"]: r for r in read_jsonl(serial).records}
    assert [k for k, r in recs.items() if r["error"]] == ["missing", "bad-ref", "no-question"]
    assert serial_stats.clips == 5 and serial_stats.questions == 9  # 3 clips, 2 bad items alone

    for prefetch, batch_size in [(2, 4), (1, 3)]:
        stats = RunnerStats()
        out = tmp_path / f"p{prefetch}-b{batch_size}.jsonl"
        run_batch_qa(questions, out, flow_gv, prefetch=prefetch, batch_size=batch_size, stats=stats)
        assert stripped(out) == reference, (prefetch, batch_size)
        assert stats.clips == 5 and stats.questions == 9
        timings = {r["id"]: r["timings"] for r in read_jsonl(out).records}
        assert timings["a1"]["prepare"] > 0 and timings["a2"]["prepare"] == 0.0  # a clip is prepared once
        assert "wait" in timings["a1"] and "wait" not in recs["a1"]["timings"]
    assert not _prepare_threads()  # the background thread ends with the run

    # Ctrl-C (here: from the progress callback, in the main thread) after 2 answers while clips are
    # being prepared ahead: the background thread stops, and the rerun finishes the same file
    out = tmp_path / "interrupted.jsonl"

    def stop_after_two(p):
        if p.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as exc:
        run_batch_qa(questions, out, flow_gv, prefetch=3, batch_size=2, progress=stop_after_two)
    assert exc.value.summary.written == 2 and len(read_jsonl(out).records) == 2
    assert not _prepare_threads()
    summary = run_batch_qa(questions, out, flow_gv, prefetch=3, batch_size=2)
    assert summary.skipped == 2 and summary.written == 7 and summary.complete
    assert stripped(out) == reference


def test_batch_command_takes_prefetch_and_batch_size(questions, tiny_model_dir, tmp_path, stripped):
    outs = []
    for extra in ([], ["--batch-size", "4", "--prefetch", "0"]):  # default: --prefetch 2
        out = tmp_path / f"answers{len(outs)}.jsonl"
        res = runner.invoke(
            app,
            ["batch", str(questions), "--out", str(out), "--model", str(tiny_model_dir), "--tracker", "static",
             "-k", "1", "--max-new-tokens", "4", "--json", *extra],
        )  # fmt: skip
        assert res.exit_code == 3, (res.output, res.exception)  # 3: done, some items failed (3 bad ones)
        info = json.loads(res.output.strip().splitlines()[0])
        assert info["written"] == 9 and info["failed"] == 3 and 0.0 < info["model_busy"] <= 1.0
        assert info["dtype"] == "float32"  # the suite pins float32 (conftest)
        outs.append(stripped(out))
    assert outs[0] == outs[1]
    res = runner.invoke(
        app, ["batch", str(questions), "--out", str(tmp_path / "x.jsonl"), "--batch-size", "0"]
    )
    assert res.exit_code == 2 and "--batch-size" in res.output


def test_eval_prefetch_batches_and_shards_by_clip_match_the_serial_run(
    shared_dir, gv, tmp_path, stripped, caplog
):
    caplog.set_level(logging.INFO, logger="garvideo.runs.engine")
    data, root = shared_dir / MINI, shared_dir / "data" / "davis2016"
    serial = tmp_path / "serial.jsonl"
    serial_res = run_videorefer_q(data, root, serial, gv, prefetch=0, batch_size=1)
    reference = stripped(serial)
    assert len(reference) == 12 and all(r["error"] is None for r in read_jsonl(serial).records)

    for prefetch, batch_size in [(0, 4)]:  # --prefetch 2 alone: the sharded runs below
        out = tmp_path / f"p{prefetch}-b{batch_size}.jsonl"
        res = run_videorefer_q(data, root, out, gv, prefetch=prefetch, batch_size=batch_size)
        assert stripped(out) == reference, (prefetch, batch_size)
        assert res.scores.to_dict() == serial_res.scores.to_dict()
    assert serial_res.scores.settings["dtype"] == "float32"
    assert "answering one by one" not in caplog.text  # the batches went through GarVideo.run_batch

    # --prefetch 2, sharded by clip: the 6 clips (2 questions each) are split 2/2/2 and never cut;
    # merged = single
    sharded = tmp_path / "sharded.jsonl"
    results = [run_videorefer_q(data, root, sharded, gv, shard=f"{i}/3", prefetch=2) for i in range(3)]
    parts = [read_jsonl(r.summary.out).records for r in results]
    assert [len(p) for p in parts] == [4, 4, 4]
    videos = [{r["video"] for r in p} for p in parts]
    assert all(len(v) == 2 for v in videos) and not (videos[0] & videos[1] or videos[1] & videos[2])
    assert results[-1].summary.merged == sharded and stripped(sharded) == reference
    # 5 ranks over the first 2 clips: whole clips, some ranks get none; the merge is still a single run
    sharded5 = tmp_path / "sharded5.jsonl"
    results = [run_videorefer_q(data, root, sharded5, gv, shard=f"{i}/5", limit=4) for i in range(5)]
    assert [len(read_jsonl(r.summary.out).records) for r in results] == [0, 2, 0, 2, 0]
    assert results[-1].summary.merged == sharded5 and stripped(sharded5) == reference[:4]


def test_runner_options_are_checked(gv):
    with pytest.raises(InputError, match="prefetch: must be an integer >= 0"):
        QuestionRunner(gv, prefetch=-1)
    with pytest.raises(InputError, match="batch_size: must be an integer >= 1"):
        QuestionRunner(gv, batch_size=0)
