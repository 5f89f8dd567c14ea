"""``garvideo eval videorefer-q`` end to end: the shared mini file, the tiny random GAR, both modes.

The tiny model's answers are meaningless (random weights); what is checked is the plumbing: one
prediction per record in the official layout, bad records reported and counted, resume, sharding,
and that ``eval score`` on the file gives the table the run printed. Outputs of two runs are
compared with ``timings`` (wall times) stripped, everything else byte for byte.
"""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from garvideo.cli import app
from garvideo.eval.videorefer_q import run_videorefer_q
from garvideo.runs.lines import read_jsonl

MINI = "data/videorefer-mini/VideoRefer-Bench-Q-mini.json"
OFFICIAL_KEYS = ["video", "Answer", "pred", "type"]
FUTURE = ["Future Predictions"]  # records 3 (with a null segmentation) and 10 of the mini file
runner = CliRunner()


@pytest.fixture(scope="module")
def mini_path(shared_dir):
    return shared_dir / MINI


@pytest.fixture(scope="module")
def video_root(shared_dir):
    return shared_dir / "data" / "davis2016"


@pytest.fixture(scope="module")
def gv(tiny_model_dir):
    from garvideo.pipeline import GarVideo

    return GarVideo(str(tiny_model_dir), tracker="static", num_frames=1, max_new_tokens=4)


@pytest.fixture()
def data_with_bad_records(mini_path, tmp_path):
    """The mini file, with frame_idx's mask of record 9 set to null, and five bad records appended."""
    records = json.loads(mini_path.read_text())
    r9 = records[9]
    r9["annotation"][0][r9["frame_idx"]] = {"segmentation": None}
    good = records[0]

    def bad(rid, **change):
        r = copy.deepcopy(good)
        r["id"] = rid
        r.update(change)
        return r

    ann = copy.deepcopy(good["annotation"])
    ann_beyond = copy.deepcopy(ann)
    ann_beyond[0]["999"] = ann_beyond[0]["1"]
    ann_bad_rle = copy.deepcopy(ann)
    ann_bad_rle[0]["16"] = {"segmentation": {"size": [480, 854], "counts": "not an rle"}}
    records += [
        bad(100, video="JPEGImages/480p/no-such-clip"),
        bad(101, type="Counting Questions"),
        bad(102, annotation=ann_beyond),
        bad(103, annotation=ann_bad_rle),
        bad(104, Question="Is <object0><region> next to <object1><region>?"),
    ]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(records))
    return path


def _cli(args, tiny_model_dir):
    args = [*args, "--model", str(tiny_model_dir), "--tracker", "static", "-k", "1", "--max-new-tokens", "4"]
    res = runner.invoke(app, ["eval", "videorefer-q", *args], terminal_width=200)
    assert res.exit_code in (0, 3), (res.output, res.exception)  # 3: some records failed
    return res


def test_single_mode_command_bad_records_resume_and_score(
    data_with_bad_records, video_root, tiny_model_dir, tmp_path, stripped
):
    preds = tmp_path / "preds.jsonl"
    args = ["--data", str(data_with_bad_records), "--video-root", str(video_root), "--out", str(preds)]
    res = _cli([*args, "--mode", "single", "--json"], tiny_model_dir)
    assert res.exit_code == 3 and "5 of 17 records failed" in res.stderr  # some records failed
    printed = json.loads(res.stdout.strip().splitlines()[-1])

    recs = read_jsonl(preds).records
    assert [r["id"] for r in recs] == [*range(12), 100, 101, 102, 103, 104]
    for r in recs:
        assert list(r)[:4] == OFFICIAL_KEYS and isinstance(r["pred"], str) and r["mode"] == "single"
    good, bad = recs[:12], {r["id"]: r["error"] for r in recs[12:]}
    assert all(r["error"] is None and len(r["frames"]) == 1 for r in good)
    assert "record 100" in bad[100] and "no such video folder" in bad[100]
    assert "record 101" in bad[101] and "unknown type 'Counting Questions'" in bad[101]
    assert "frame key 999 beyond the 50 frames" in bad[102]
    assert "malformed COCO RLE" in bad[103]
    assert "'annotation' has 1 objects but the question refers to 2" in bad[104]
    assert any("used the nearest annotated frame" in n for n in recs[9]["notes"])
    assert (
        recs[1]["timings"]["prepare"] == 0.0 and recs[1]["timings"]["prefill"] == 0.0
    )  # shared with record 0
    assert recs[3]["timings"]["prepare"] == 0.0  # same clip and frame_idx mask as record 2

    # the table: every record counted, failed ones wrong; `eval score` gives the same numbers
    assert printed["overall"]["total"] == 17 and printed["failed"] == 5
    assert printed["per_type"]["Basic Questions"]["total"] == 5 + 4  # records 100, 102, 103, 104 are Basic
    assert printed["settings"]["mode"] == "single" and printed["settings"]["tracker"] == "static"
    assert printed["settings"]["num_frames"] == 1 and printed["settings"]["roi_mode"] == "official"
    scored = runner.invoke(app, ["eval", "score", str(preds), "--json"])
    assert scored.exit_code == 0 and json.loads(scored.output) == printed
    sidecar = json.loads((tmp_path / "preds.scores.json").read_text())
    assert sidecar == printed
    md = (tmp_path / "preds.scores.md").read_text()
    assert "| **Overall** | " in md and "mode: single" in md

    # resume after a crash in the middle of line 12: records 0..10 are kept as they are, the rest redone
    reference = stripped(preds)
    lines = preds.read_text().splitlines(keepends=True)
    preds.write_text("".join(lines[:11]) + lines[11][:25])
    _cli([*args, "--mode", "single", "--json"], tiny_model_dir)
    assert preds.read_text().splitlines(keepends=True)[:11] == lines[:11]  # not redone: same timings
    assert stripped(preds) == reference


def test_bad_files_and_options_are_clear_errors_before_any_work(tmp_path, mini_path, video_root):
    from garvideo.cli import main

    def run(data, *extra):
        out = tmp_path / "p.jsonl"
        argv = [
            "eval",
            "videorefer-q",
            "--data",
            str(data),
            "--video-root",
            str(video_root),
            "--out",
            str(out),
        ]
        with pytest.raises(SystemExit) as info:
            main([*argv, "--model", str(tmp_path / "no-model"), *extra])
        assert info.value.code == 2
        assert not out.exists()

    bad = tmp_path / "bench.json"
    bad.write_text('[{"id": 0, "video": ')
    run(bad)
    run(mini_path, "--types", "Basic Questions,Counting")
    run(mini_path, "--mode", "both")
    run(mini_path, "--shard", "2/2")


def test_multi_mode_shards_and_merge(mini_path, video_root, gv, tmp_path, stripped):
    single = tmp_path / "multi.jsonl"
    res = run_videorefer_q(mini_path, video_root, single, gv, mode="multi", types=FUTURE)
    recs = read_jsonl(single).records
    assert [r["id"] for r in recs] == [3, 10] and all(r["error"] is None for r in recs)
    raw = json.loads(mini_path.read_text())
    for r, src in zip(recs, [raw[3], raw[10]]):
        assert r["mode"] == "multi" and set(r["frames"]) <= {int(k) for k in src["annotation"][0]}
    assert raw[3]["annotation"][0]["38"]["segmentation"] is None  # the record with a null segmentation ran
    assert res.scores.overall.total == 2 and res.scores.settings["mode"] == "multi"

    sharded = tmp_path / "sharded.jsonl"
    r0 = run_videorefer_q(mini_path, video_root, sharded, gv, mode="multi", types=FUTURE, shard="0/2")
    r1 = run_videorefer_q(mini_path, video_root, sharded, gv, mode="multi", types=FUTURE, shard="1/2")
    assert r0.summary.out.name == "sharded.part-0-of-2.jsonl" and r0.summary.merged is None
    assert r1.summary.merged == sharded and r1.merged_scores.to_dict() == res.scores.to_dict()
    assert stripped(sharded) == stripped(single)

    sharded.unlink()
    merged = runner.invoke(app, ["merge", str(sharded), "--json"])
    assert merged.exit_code == 0, merged.output
    info = json.loads(merged.output)
    assert info["records"] == 2 and info["scores"]["overall"] == res.scores.to_dict()["overall"]
    assert stripped(sharded) == stripped(single)
    assert json.loads((tmp_path / "sharded.scores.json").read_text())["settings"]["mode"] == "multi"
