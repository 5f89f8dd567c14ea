"""`garvideo track`: id-map PNGs, --json summary, --overlay, bad input."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image


def test_track_writes_id_maps_json_and_overlay(sample_clip, tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("GARVIDEO_SAM2_CHECKPOINT", raising=False)
    monkeypatch.setattr("garvideo.trackers.sam2_backend.cached_hub_checkpoint", lambda: None)
    out = tmp_path / "masks"
    masks = ["--mask", sample_clip.object_masks[0], "--mask", sample_clip.object_masks[1]]
    code, stdout, err = run_cli(
        "track", sample_clip.video_path, *masks, "--out", out, "--overlay", tmp_path / "o.mp4",
        "--end", "20", "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["tracker"] == "flow"  # auto, offline (tests run with HF_HUB_OFFLINE=1), no checkpoint
    assert summary["tracker_reason"].startswith("auto: flow")
    assert "offline" in summary["tracker_reason"] and "--sam2-checkpoint" in summary["tracker_reason"]
    assert summary["frames"] == 20
    assert set(summary["objects"]) == {"object0", "object1"}
    assert summary["objects"]["object0"] == {"id": 1, "visible_frames": 20}
    assert "total" in summary["timings"]
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"{i:05d}.png" for i in range(20)]
    im = Image.open(out / "00007.png")
    assert im.mode == "P" and im.size == (sample_clip.width, sample_clip.height)
    assert im.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]  # DAVIS: background, object0, object1
    ids = np.asarray(im)
    assert set(np.unique(ids)) <= {0, 1, 2} and (ids == 1).any() and (ids == 2).any()
    first = np.asarray(Image.open(out / "00000.png"))
    assert np.array_equal(first == 1, sample_clip.gt(0)[0])
    assert (tmp_path / "o.mp4").stat().st_size > 1000


def test_track_from_a_middle_frame_with_static_and_text_output(sample_clip, tmp_path, run_cli):
    out = tmp_path / "m"
    code, stdout, err = run_cli(
        "track", sample_clip.frames_dir, "--mask", sample_clip.prompt_mask, "--frame", "0",
        "--tracker", "static", "--start", "10", "--stride", "10", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert "static" in stdout and "object1: visible" in stdout
    assert "tracker: static: --tracker static" in err  # which tracker ran and why, on stderr
    assert sorted(p.name for p in out.iterdir()) == ["00010.png", "00020.png", "00030.png", "00040.png"]


def test_track_bad_input_is_one_line_exit_2(sample_clip, tmp_path, run_cli):
    small = tmp_path / "small.png"
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(small)
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((sample_clip.height, sample_clip.width), np.uint8)).save(empty)
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_text("garbage")
    cases = [
        (["--mask", str(small)], "10x10"),
        (["--mask", str(empty)], "empty"),
        (["--mask", str(sample_clip.prompt_mask), "--frame", "500"], "out of range"),
        (
            ["--mask", str(sample_clip.prompt_mask), "--tracker", "sam2", "--sam2-checkpoint", str(bad_ckpt)],
            "unreadable sam2 checkpoint",
        ),
        (["--mask", str(sample_clip.prompt_mask), "--tracker", "nope"], "unknown tracker"),
    ]
    for extra, needle in cases:
        code, _, err = run_cli("track", sample_clip.video_path, *extra, "--out", tmp_path / "x")
        lines = err.strip().splitlines()
        assert code == 2, (extra, err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (extra, err)
    code, stdout, err = run_cli(
        "track", sample_clip.video_path, "--mask", small, "--resize-masks",
        "--end", "3", "--tracker", "static", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["frames"] == 3


def test_palette_pngs_and_rle_round_trip(sample_clip, tmp_path, run_cli):
    from garvideo.masks import load_mask, read_track_rle, rle_decode

    out, rle = tmp_path / "pal", tmp_path / "track.json"
    code, stdout, err = run_cli(
        "track", sample_clip.frames_dir, "--mask", sample_clip.object_masks[0], "--mask",
        sample_clip.object_masks[1], "--tracker", "static", "--end", "6", "--out", out, "--rle", rle,
        "--json", "--with-masks",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(stdout)
    gt = sample_clip.gt(0)  # static: the prompt masks on every frame
    back = read_track_rle(rle)  # per object {frame: mask}
    doc = json.loads(rle.read_text())
    assert doc["objects"] == ["object0", "object1"] and doc["size"] == [sample_clip.height, sample_clip.width]
    assert doc["tracker"] == "static" and doc["tracker_reason"] == "static: --tracker static"
    assert [sorted(o) for o in back] == [list(range(6))] * 2
    for f in range(6):
        # garvideo's own reader reads the palette PNG back into the same objects, in order
        objs = load_mask(out / f"{f:05d}.png", (sample_clip.height, sample_clip.width))
        assert len(objs) == 2 and all(np.array_equal(a, b) for a, b in zip(objs, gt))
        assert all(np.array_equal(back[k][f], gt[k]) for k in range(2))
        # --json --with-masks: the same RLE per object and frame (VideoRefer's annotation layout)
        assert all(
            np.array_equal(rle_decode(summary["masks"][k][str(f)]["segmentation"]), gt[k]) for k in range(2)
        )
    im = Image.open(out / "00003.png")
    assert im.mode == "P" and set(np.unique(np.asarray(im))) == {0, 1, 2}


def test_absent_objects_are_null_in_the_rle(tmp_path):
    from garvideo.masks import read_track_rle, write_track_rle

    m = np.zeros((6, 8), bool)
    m[1:3, 2:5] = True
    from garvideo.masks import track_to_rle

    ann = track_to_rle({0: [m, m], 4: [None, np.zeros_like(m)]}, 2)
    assert track_to_rle(iter([(0, [m, m]), (4, [None, None])]), 2) == ann  # pairs: the same
    path = write_track_rle(tmp_path / "t.json", ann, (6, 8))
    doc = json.loads(path.read_text())
    assert doc["annotation"][1]["4"] is None and doc["annotation"][0]["0"]["segmentation"]["size"] == [6, 8]
    back = read_track_rle(path)
    assert np.array_equal(back[0][0], m) and back[0][4] is None and back[1][4] is None


def test_describe_and_ask_say_which_tracker_ran(sample_clip, tmp_path, run_cli, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("GARVIDEO_SAM2_CHECKPOINT", raising=False)
    monkeypatch.setattr("garvideo.trackers.sam2_backend.cached_hub_checkpoint", lambda: None)
    tiny = ["--model", tiny_model_dir, "--max-new-tokens", "2", "--num-frames", "1"]
    code, out, err = run_cli("describe", sample_clip.video_path, "--mask", sample_clip.object_masks[0], *tiny)
    assert code == 0, err
    # auto, offline (the tests' HF_HUB_OFFLINE=1), no checkpoint: flow, and the reason on stderr
    lines = [ln for ln in err.splitlines() if ln.startswith("note: tracker: ")]
    assert len(lines) == 1 and "auto: flow" in lines[0] and "offline" in lines[0], err
    code, out, err = run_cli(
        "ask", sample_clip.video_path, "--mask", sample_clip.object_masks[0], "--question",
        "What is <object0>?", "--tracker", "static", "--json", *tiny,
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["tracker"] == "static" and data["tracker_reason"] == "static: --tracker static"
    assert data["notes"][0] == "tracker: static: --tracker static"
    code, _, err = run_cli(
        "ask", sample_clip.video_path, "--box", "10,10,60,60", "--question", "What is <object0>?", *tiny
    )
    assert code == 2 and "point and box prompts need SAM 2" in err and "--sam2-checkpoint" in err, err
    code, _, err = run_cli("describe", sample_clip.video_path, *tiny)
    assert code == 2 and "give at least one object" in err, err


def test_batch_says_which_tracker_ran(sample_clip, tmp_path, run_cli, tiny_model_dir):
    questions = tmp_path / "q.jsonl"
    line = {"id": "a", "video": str(sample_clip.video_path), "mask": [str(sample_clip.object_masks[0])],
            "frame": 0, "question": "What is <object0>?"}  # fmt: skip
    questions.write_text(json.dumps(line) + "\n")
    tiny = ["--model", tiny_model_dir, "--max-new-tokens", "1", "--num-frames", "1", "--tracker", "static"]
    code, out, err = run_cli("batch", questions, "--out", tmp_path / "a.jsonl", *tiny)
    assert code == 0, err
    assert "tracker: static: --tracker static" in err
    record = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])
    assert record["notes"][0] == "tracker: static: --tracker static"  # on every answer line too
    code, out, err = run_cli("batch", questions, "--out", tmp_path / "b.jsonl", *tiny, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["tracker"] == "static" and info["tracker_reason"] == "static: --tracker static"


def test_flow_options_reach_the_tracker_and_bad_ones_are_one_line(sample_clip, tmp_path, run_cli):
    """--flow-option KEY=VALUE sets FlowOptions fields (typed as the field); the tracker's settings are
    in the JSON summary's "info". A bad item stops every command at once, naming --flow-option."""
    code, stdout, err = run_cli(
        "track", sample_clip.video_path, "--mask", sample_clip.prompt_mask, "--tracker", "flow",
        "--flow-option", "work_size=320", "--flow-option", "motion=0", "--flow-option", "refine=off",
        "--end", "4", "--json",
    )  # fmt: skip
    assert code == 0, err
    info = json.loads(stdout)["info"]
    assert (info["work_size"], info["motion"], info["refine"]) == (320, 0.0, False)
    bad = [
        (["--flow-option", "bogus=1"], "unknown flow option 'bogus'"),
        (["--flow-option", "work_size=big"], "work_size takes a int, got 'big'"),
        (["--flow-option", "motion"], "expected KEY=VALUE"),
        (["--flow-option", "work_size=8"], "work_size: must be at least 32"),  # FlowTracker refuses it
    ]
    for extra, needle in bad:
        code, _, err = run_cli(
            "track", sample_clip.video_path, "--mask", sample_clip.prompt_mask, *extra, "--json"
        )
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (extra, err)
        assert needle in lines[0], (extra, err)
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps(
            {
                "id": 1,
                "video": str(sample_clip.video_path),
                "mask": str(sample_clip.prompt_mask),
                "question": "What is <object0>?",
            }
        )
        + "\n"
    )
    for argv in (
        ["describe", sample_clip.video_path, "--mask", sample_clip.prompt_mask],
        [
            "ask",
            sample_clip.video_path,
            "--mask",
            sample_clip.prompt_mask,
            "--question",
            "What is <object0>?",
        ],
        ["batch", questions, "--out", tmp_path / "a.jsonl"],
    ):
        code, _, err = run_cli(*argv, "--flow-option", "bogus=1")
        assert code == 2 and err.strip().splitlines()[-1].startswith("error: --flow-option"), (argv, err)
    assert not (tmp_path / "a.jsonl").exists()  # refused before anything was written
