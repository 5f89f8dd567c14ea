"""A run's settings are part of its output (issue 19): recorded beside the predictions, compared on a
rerun (refused in one line naming the flag, or replaced with ``--overwrite`` by exactly what a fresh
run writes), carried into the score files and ``eval score``, and checked by ``merge``; a rerun retries
the records that failed (``--skip-failed`` keeps them); a wrong ``--video-root`` is refused up front.

Runs use the shared VideoRefer mini file and two tiny random GARs (seeds 0 and 1).
"""

from __future__ import annotations

import json
import shutil

import pytest

from garvideo.runs.lines import read_jsonl
from garvideo.runs.settings import SettingsMismatch, read_settings, settings_path

MINI = "data/videorefer-mini/VideoRefer-Bench-Q-mini.json"


@pytest.fixture(scope="module")
def tiny2_dir(tmp_path_factory):
    """A second tiny GAR (other seed, so other weights) in its own folder."""
    from garvideo.model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_gar2"), seed=1)


@pytest.fixture(scope="module")
def bench(shared_dir):
    return shared_dir / MINI, shared_dir / "data" / "davis2016"


def _eval(run_cli, bench, out, model, *extra, limit="3"):
    data, root = bench
    argv = ["eval", "videorefer-q", "--data", data, "--video-root", root, "--out", out, "--limit", limit]
    return run_cli(*argv, "--model", model, *extra)


@pytest.mark.slow
def test_two_runs_with_other_settings_refuse_or_overwrite_and_scores_describe_the_predictions(
    run_cli, bench, tiny_model_dir, tiny2_dir, tmp_path, stripped
):
    preds = tmp_path / "preds.jsonl"
    first = ["--tracker", "static", "-k", "1", "--max-new-tokens", "4"]
    rc, _, err = _eval(run_cli, bench, preds, tiny_model_dir, *first)
    assert rc == 0, err
    recorded = read_settings(preds)
    assert recorded is not None and recorded.settings["num_frames"] == 1
    assert recorded.settings["tracker"] == "static" and recorded.settings["max_new_tokens"] == 4
    assert recorded.settings["model"] == str(tiny_model_dir.resolve()) and recorded.settings["model_hash"]
    before = preds.read_bytes()

    # the second run: other model, K, tracker and generation length -> refused, nothing written
    second = ["--tracker", "flow", "-k", "2", "--max-new-tokens", "6"]
    rc, out, err = _eval(run_cli, bench, preds, tiny2_dir, *second)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: --model: ") and "in preds.jsonl" in lines[0]
    assert "a new --out" in lines[0] and "--overwrite" in lines[0]
    assert preds.read_bytes() == before

    # one setting changed: named with its flag and both values
    rc, _, err = _eval(
        run_cli, bench, preds, tiny_model_dir, "--tracker", "static", "-k", "2", "--max-new-tokens", "4"
    )
    assert rc == 2 and err.strip().splitlines()[0].startswith("error: --num-frames: 1 in preds.jsonl, 2 now;")
    rc, _, err = _eval(
        run_cli, bench, preds, tiny_model_dir, "--tracker", "flow", "-k", "1", "--max-new-tokens", "4"
    )
    assert rc == 2 and "error: --tracker: static in preds.jsonl, flow now;" in err
    rc, _, err = _eval(run_cli, bench, preds, tiny_model_dir, *first, "--mode", "multi")
    assert rc == 2 and "error: --mode: single in preds.jsonl, multi now;" in err
    assert preds.read_bytes() == before

    # --overwrite gives exactly what a fresh run into a new file gives, and its scores are labelled so
    fresh = tmp_path / "fresh.jsonl"
    assert _eval(run_cli, bench, fresh, tiny2_dir, *second)[0] == 0
    rc, _, err = _eval(run_cli, bench, preds, tiny2_dir, *second, "--overwrite")
    assert rc == 0, err
    assert stripped(preds) == stripped(fresh)
    assert read_settings(preds).settings == read_settings(fresh).settings
    assert all(len(r["frames"]) == 2 for r in read_jsonl(preds).records)
    scores = json.loads((tmp_path / "preds.scores.json").read_text())
    assert scores["settings"] == read_settings(preds).settings and scores["settings_recorded"]
    assert scores["settings"]["tracker"] == "flow" and scores["settings"]["num_frames"] == 2
    md = (tmp_path / "preds.scores.md").read_text()
    assert "num_frames: 2" in md and "tracker: flow" in md and str(tiny2_dir.resolve()) in md

    # the same settings resume (nothing redone), and `eval score` labels with the predictions' settings
    again = preds.read_bytes()
    rc, out, err = _eval(run_cli, bench, preds, tiny2_dir, *second, "--json")
    assert rc == 0 and preds.read_bytes() == again
    rc, out, _ = run_cli("eval", "score", preds, "--json")
    assert rc == 0 and json.loads(out)["settings"] == scores["settings"]

    # a predictions file made elsewhere (no settings recorded) is scored and marked so
    elsewhere = tmp_path / "elsewhere.jsonl"
    shutil.copy(preds, elsewhere)
    rc, out, _ = run_cli("eval", "score", elsewhere, "--json")
    got = json.loads(out)
    assert rc == 0 and got["settings_recorded"] is False and "settings" not in got
    assert got["overall"] == scores["overall"]
    rc, out, _ = run_cli("eval", "score", elsewhere)
    assert "settings: not recorded" in out
    # ... and cannot be resumed, since its settings are unknown
    rc, _, err = _eval(run_cli, bench, elsewhere, tiny2_dir, *second)
    assert rc == 2 and "no recorded settings" in err and "--overwrite" in err


@pytest.mark.slow
def test_fix_and_rerun_retries_the_failed_records(run_cli, bench, tiny_model_dir, tmp_path):
    data, root = bench
    records = json.loads(data.read_text())[:3]
    records[1]["video"] = "JPEGImages/480p/moved-away"  # record 1's video is not there (yet)
    fixed_root = tmp_path / "videos"
    shutil.copytree(root, fixed_root, symlinks=True)
    bad = tmp_path / "bench.json"
    bad.write_text(json.dumps(records))
    preds = tmp_path / "p.jsonl"
    args = ["eval", "videorefer-q", "--data", bad, "--video-root", fixed_root, "--out", preds]
    opts = ["--model", tiny_model_dir, "--tracker", "static", "-k", "1", "--max-new-tokens", "4"]
    rc, _, err = run_cli(*args, *opts)
    assert rc == 3 and "1 of 3 records failed" in err and "rerunning the same command retries them" in err

    # the user fixes the cause; the rerun without extra flags retries the failed record only
    (fixed_root / "JPEGImages/480p/moved-away").symlink_to((root / records[0]["video"]).resolve())
    kept = preds.read_text().splitlines()
    rc, _, err = run_cli(*args, *opts, "--skip-failed")  # --skip-failed keeps it
    assert rc == 3 and "kept (--skip-failed)" in err and preds.read_text().splitlines() == kept
    rc, _, err = run_cli(*args, *opts)
    assert rc == 0, err
    now = read_jsonl(preds).records
    assert all(r["error"] is None for r in now)
    before = [json.loads(x) for x in kept]
    assert before[0] == now[0] and before[2] == now[2]  # the answered ones kept as they were
    rc, _, err = run_cli(*args, *opts, "--retry-errors")  # the old flag is still accepted
    assert rc == 0, err


def test_a_video_root_without_the_first_video_is_refused_before_any_work(
    run_cli, bench, tiny_model_dir, tmp_path
):
    data, root = bench
    preds = tmp_path / "p.jsonl"
    rc, _, err = run_cli(
        "eval", "videorefer-q", "--data", data, "--video-root", root / "JPEGImages", "--out", preds,
        "--model", tmp_path / "no-model-needed",
    )  # fmt: skip
    assert rc == 2 and err.startswith("error: --video-root: the video of the first record (id 0)")
    assert len(err.strip().splitlines()) == 1 and not preds.exists()


@pytest.mark.slow
def test_batch_refuses_other_settings_and_merge_refuses_mixed_parts(
    sample_clip, tiny_model_dir, tmp_path, run_cli
):
    c = sample_clip
    qs = tmp_path / "questions.jsonl"
    qs.write_text(
        "".join(
            json.dumps(
                {
                    "id": i,
                    "video": str(c.video_path),
                    "mask": str(c.prompt_mask),
                    "question": "Describe <object0>.",
                }
            )
            + "\n"
            for i in range(2)
        )
    )
    out = tmp_path / "answers.jsonl"
    base = [
        "batch",
        qs,
        "--out",
        out,
        "--model",
        tiny_model_dir,
        "--tracker",
        "static",
        "--max-new-tokens",
        "3",
    ]
    assert run_cli(*base, "-k", "1")[0] == 0
    rc, _, err = run_cli(*base, "-k", "2")
    assert rc == 2 and err.startswith("error: --num-frames: 1 in answers.jsonl, 2 now;")
    rc, printed, _ = run_cli(*base, "-k", "1")
    assert rc == 0 and "2 already there" in printed

    # shards: rank 0 with K=1, rank 1 with K=2 -> not merged, and `merge` refuses
    sharded = tmp_path / "sharded.jsonl"
    shard = [
        "batch",
        qs,
        "--out",
        sharded,
        "--model",
        tiny_model_dir,
        "--tracker",
        "static",
        "--max-new-tokens",
        "3",
    ]
    assert run_cli(*shard, "-k", "1", "--shard", "0/2")[0] == 0
    rc, _, err = run_cli(*shard, "-k", "2", "--shard", "1/2")
    assert rc == 0 and "not merged" in err and not sharded.exists()
    assert settings_path(tmp_path / "sharded.part-1-of-2.jsonl").is_file()
    rc, _, err = run_cli("merge", sharded)
    assert rc == 2 and "other settings" in err and "num_frames" in err and not sharded.exists()
    # the rank rerun with the other's settings and --overwrite: the merge happens, settings carried over
    rc, _, err = run_cli(*shard, "-k", "1", "--shard", "1/2", "--overwrite")
    assert rc == 0, err
    assert sharded.is_file() and read_settings(sharded).settings["num_frames"] == 1


def test_the_library_raises_a_mismatch_naming_the_field(sample_clip, tiny_model_dir, tmp_path):
    from garvideo.pipeline import GarVideo
    from garvideo.runs.batch_qa import run_batch_qa
    from garvideo.runs.questions import load_questions

    c = sample_clip
    qs = tmp_path / "q.jsonl"
    qs.write_text(
        json.dumps(
            {"id": 0, "video": str(c.video_path), "mask": str(c.prompt_mask), "question": "Q <object0>?"}
        )
        + "\n"
    )
    out = tmp_path / "a.jsonl"
    run_batch_qa(
        load_questions(qs),
        out,
        GarVideo(str(tiny_model_dir), tracker="static", num_frames=1, max_new_tokens=3),
    )
    with pytest.raises(SettingsMismatch) as info:
        run_batch_qa(
            load_questions(qs),
            out,
            GarVideo(str(tiny_model_dir), tracker="static", num_frames=1, max_new_tokens=5),
        )
    assert info.value.field == "max_new_tokens" and (info.value.old, info.value.new) == (3, 5)
    assert str(info.value).endswith("max_new_tokens: 3 in a.jsonl, 5 now")
