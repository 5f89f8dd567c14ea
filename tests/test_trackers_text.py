"""Text prompts (``--text``): SAM 3's concept detector on the prompt frame, on the tiny random SAM 3.

The weights are random, so the candidates are too; the tests pin what garvideo does with them: the list is
transformers' own post-processed detections (sorted, thresholded, NMS'd by mask IoU), the chosen mask is the
detector's and becomes the tracked object's prompt mask, no match is exit 2 with the best scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from garvideo.trackers.text import NoTextMatchError, TextDetector, mask_nms, text_prompts


@pytest.fixture(scope="module")
def detector(tiny_sam3_dir):
    return TextDetector(str(tiny_sam3_dir), device="cpu", threshold=0.0)


def _frame0(sample_clip) -> np.ndarray:
    from garvideo.video import open_video

    with open_video(sample_clip.video_path) as v:
        return next(iter(v.frames([0])))[1]


def test_candidates_are_the_detectors_own_sorted_and_nms(detector, sample_clip) -> None:
    import torch
    import transformers

    image = _frame0(sample_clip)
    found = detector.detect(image, "the swan")
    # Pinned to transformers' own pipeline: Sam3Processor + Sam3Model + post_process_instance_segmentation.
    proc = transformers.Sam3Processor.from_pretrained(detector.checkpoint)
    model = transformers.Sam3Model.from_pretrained(detector.checkpoint).eval()
    with torch.inference_mode():
        out = model(**proc(images=image, text="the swan", return_tensors="pt"))
    ref = proc.post_process_instance_segmentation(out, threshold=0.0, target_sizes=[image.shape[:2]])[0]
    scores = ref["scores"].numpy()
    assert len(found.candidates) >= 2
    for c in found.candidates:
        assert c.score == float(scores[c.query])
        np.testing.assert_array_equal(c.mask, ref["masks"][c.query].bool().numpy())
        np.testing.assert_allclose(c.box, ref["boxes"][c.query].numpy())
        assert c.area == int(c.mask.sum()) > 0
    got = [c.score for c in found.candidates]
    assert got == sorted(got, reverse=True) and [c.rank for c in found.candidates] == list(range(len(got)))
    assert found.best_scores == sorted(scores.tolist(), reverse=True)[:5]
    # NMS: no two kept masks overlap by more than NMS_IOU; every dropped one overlaps a better kept one.
    kept = {c.query for c in found.candidates}
    masks = ref["masks"].bool().numpy()

    def iou(a: int, b: int) -> float:
        return float((masks[a] & masks[b]).sum() / max((masks[a] | masks[b]).sum(), 1))

    assert all(iou(a, b) <= 0.5 for a in kept for b in kept if a != b)
    for q in set(range(len(scores))) - kept:
        if masks[q].any():
            assert any(iou(q, k) > 0.5 and scores[k] >= scores[q] for k in kept)


def test_mask_nms_keeps_the_best_of_overlapping_masks() -> None:
    m = np.zeros((3, 10, 10), dtype=bool)
    m[0, :5] = True
    m[1, :4] = True  # IoU 0.8 with 0
    m[2, 6:] = True
    assert mask_nms(m, [1, 0, 2]) == [1, 2]
    assert mask_nms(m, [0, 1, 2], iou=0.9) == [0, 1, 2]


def test_no_match_lists_the_best_scores(tiny_sam3_dir, sample_clip) -> None:
    from garvideo.video import open_video

    det = TextDetector(str(tiny_sam3_dir), device="cpu", threshold=0.99)
    with open_video(sample_clip.video_path) as v, pytest.raises(NoTextMatchError) as exc:
        text_prompts(det, v, ["the swan"], frame=0)
    assert "no object scored above the threshold 0.99 on frame 0 (best scores: 0." in str(exc.value)


def test_track_text_json_and_pick(run_cli, tiny_sam3_dir, sample_clip, detector) -> None:
    from pycocotools import mask as mask_utils

    found = detector.detect(_frame0(sample_clip), "the swan")
    for pick in (0, 1):
        code, out, err = run_cli(
            "track", sample_clip.video_path, "--text", "the swan", "--text-threshold", "0",
            "--text-pick", str(pick), "--sam3-checkpoint", tiny_sam3_dir, "--tracker", "flow",
            "--end", "3", "--json", "--with-masks",
        )  # fmt: skip
        assert code == 0, err
        data = json.loads(out)
        (t,) = data["text_prompts"]
        assert t["picked"] == pick and t["text"] == "the swan" and t["frame"] == 0
        assert [c["score"] for c in t["candidates"]] == [round(c.score, 6) for c in found.candidates]
        # The chosen candidate's mask is the tracked object's mask on the prompt frame.
        rle = data["masks"][0]["0"]["segmentation"]
        rle = {**rle, "counts": rle["counts"].encode()} if isinstance(rle["counts"], str) else rle
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), found.candidates[pick].mask)


def test_cli_no_match_and_bad_pick_exit_2(run_cli, tiny_sam3_dir, sample_clip) -> None:
    base = ["track", sample_clip.video_path, "--text", "the swan", "--sam3-checkpoint", tiny_sam3_dir,
            "--tracker", "flow", "--json"]  # fmt: skip
    code, out, err = run_cli(*base, "--text-threshold", "0.99")
    assert code == 2 and out == "" and "Traceback" not in err
    assert '--text "the swan": no object scored above the threshold 0.99' in err and "best scores" in err
    code, out, err = run_cli(*base, "--text-threshold", "0", "--text-pick", "50")
    assert code == 2 and "--text-pick: 50 is out of range" in err


@pytest.mark.slow
@pytest.mark.parametrize("tracker", ["flow", "sam3"])
def test_describe_text_end_to_end(run_cli, tiny_sam3_dir, tiny_model_dir, sample_clip, tracker) -> None:
    code, out, err = run_cli(
        "describe", sample_clip.video_path, "--text", "the swan", "--text-threshold", "0",
        "--sam3-checkpoint", tiny_sam3_dir, "--tracker", tracker, "--model", tiny_model_dir,
        "--max-new-tokens", "3", "--num-frames", "2", "--json",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["tracker"] == tracker and [o["id"] for o in data["objects"]] == ["object0"]
    assert data["text_prompts"][0]["picked"] == 0 and data["text_prompts"][0]["candidates"]
    assert isinstance(data["text"], str) and data["new_tokens"] == 3


def test_ask_text_prints_the_candidates(run_cli, tiny_sam3_dir, tiny_model_dir, sample_clip) -> None:
    code, _, err = run_cli(
        "ask", sample_clip.video_path, "--text", "the swan", "--text-threshold", "0",
        "--sam3-checkpoint", tiny_sam3_dir, "--tracker", "static", "--model", tiny_model_dir,
        "--max-new-tokens", "2", "--num-frames", "1", "--question", "What is <object0>?",
    )  # fmt: skip
    assert code == 0, err
    assert 'note: --text "the swan" on frame 0: object0 is candidate #0 of' in err


# ---------------------------------------------------------------------------------------------------
# batch JSONL: a "text" field per record
# ---------------------------------------------------------------------------------------------------
def test_batch_text_records_candidates_errors_and_settings(
    run_cli, tiny_sam3_dir, tiny_model_dir, sample_clip, detector, tmp_path
) -> None:
    from garvideo.runs.questions import load_questions

    c = sample_clip
    lines = [
        {"id": "t", "video": str(c.video_path), "text": "the swan", "question": "What is <object0>?"},
        {"id": "pick", "video": str(c.video_path), "text": ["the swan"], "text_pick": 1, "frame": 0,
         "mask": str(c.object_masks[0]), "question": "Is <object1> near <object0>?"},
        {"id": "far-pick", "video": str(c.video_path), "text": "the swan", "text_pick": 99, "question": "Q <object0>?"},
        {"id": "bad", "video": str(c.video_path), "text": "", "question": "Q <object0>?"},
    ]  # fmt: skip
    qpath = tmp_path / "q.jsonl"
    qpath.write_text("".join(json.dumps(q) + "\n" for q in lines))
    qs = {q.id: q for q in load_questions(qpath)}
    assert qs["pick"].texts == ("the swan",) and qs["pick"].text_picks == (1,)
    assert qs["bad"].problem is not None and "'text'" in qs["bad"].problem
    out = tmp_path / "a.jsonl"
    base = ["batch", qpath, "--out", out, "--model", tiny_model_dir, "--tracker", "static", "-k", "1",
            "--max-new-tokens", "2", "--sam3-checkpoint", tiny_sam3_dir]  # fmt: skip
    code, _, err = run_cli(*base, "--text-threshold", "0")
    assert code == 3, err  # two of four failed, the run went on
    recs = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    found = detector.detect(_frame0(sample_clip), "the swan")
    want = [round(x.score, 6) for x in found.candidates]
    assert recs["t"]["error"] is None and recs["t"]["text"][0]["picked"] == 0
    assert [x["score"] for x in recs["t"]["text"][0]["candidates"]] == want
    assert recs["pick"]["error"] is None and recs["pick"]["text"][0]["picked"] == 1
    # a record's error is the library's InputError (its source a field: text_pick); the CLI's stderr line
    # names the flag instead (garvideo/cli/_errors.py; test_cli_no_match_and_bad_pick_exit_2)
    assert "text_pick: 99 is out of range" in (recs["far-pick"]["error"] or "")
    assert "text" not in recs["far-pick"]
    assert "'text'" in recs["bad"]["error"]
    settings = json.loads((tmp_path / "a.settings.json").read_text())["settings"]
    assert settings["text_threshold"] == 0.0 and settings["text_checkpoint"] == str(tiny_sam3_dir.resolve())
    assert len(settings["text_checkpoint_hash"]) == 16
    # Another threshold is another run: refused, nothing lost.
    before = out.read_text()
    code, _, err = run_cli(*base, "--text-threshold", "0.99")
    assert code == 2 and "--text-threshold: 0.0 in a.jsonl, 0.99 now" in err and out.read_text() == before
    # No match is a per-record error naming the best scores (a fresh run at 0.99).
    out2 = tmp_path / "b.jsonl"
    code, _, err = run_cli(*[a if a != out else out2 for a in base], "--text-threshold", "0.99")
    assert code == 2  # every question failed
    recs2 = {r["id"]: r for r in map(json.loads, out2.read_text().splitlines())}
    assert "no object scored above the threshold 0.99 on frame 0 (best scores: 0." in recs2["t"]["error"]
