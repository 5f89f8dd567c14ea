"""The demo scripts on the synthetic sample clip: overlay videos checked pixel by pixel, the tiny GAR
describing and answering, and the scripts' handling of bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from garvideo.masks import load_mask
from garvideo.overlay import object_color
from garvideo.video import open_video

ALPHA = 0.45  # garvideo.overlay.render_overlay's default tint opacity
NUM_FRAMES = 2
MAX_NEW_TOKENS = 12


def check_overlay(
    overlay: Path,
    clip,
    masks_at,
    *,
    frames=(0, 10, 24, 40, 47),
    caption: bool = False,
    fps: float | None = None,
) -> None:
    """The overlay decodes with the clip's frame count and size, and on ``frames`` each object's
    mask is tinted in its colour where ``masks_at(t)`` says it is, and nothing is drawn far from
    the masks; with ``caption`` the text is in a dark band below the frame (the video is taller)."""
    with open_video(overlay) as ov, open_video(clip.video_path) as src:
        assert (ov.num_frames, ov.width) == (clip.num_frames, clip.width)
        assert ov.height > clip.height if caption else ov.height == clip.height
        assert ov.fps == pytest.approx(clip.fps if fps is None else fps, rel=0.01)
        for t in frames:
            full, orig = ov.frame(t).astype(np.float32), src.frame(t).astype(np.float32)
            drawn, below = full[: clip.height], full[clip.height :]
            band = clip.height
            anywhere = np.zeros((clip.height, clip.width), bool)
            for oid, mask in masks_at(t).items():
                anywhere |= mask
                inner = cv2.erode(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
                inner[band:] = False
                if inner.sum() < 30:  # the object left the frame or hides behind the post
                    continue
                tinted = (1 - ALPHA) * orig + ALPHA * np.array(object_color(oid), np.float32)
                d_tinted = float(np.abs(drawn - tinted)[inner].mean())
                d_orig = float(np.abs(drawn - orig)[inner].mean())
                assert d_tinted < 8 and d_tinted < d_orig / 2, (t, oid, d_tinted, d_orig)
            far = ~cv2.dilate(anywhere.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
            far[band:] = False
            assert float(np.abs(drawn - orig)[far].mean()) < 5, t
            if caption:  # white text on a dark band
                assert below.mean() < 100 and (below > 200).any(), t


# ----------------------------------------------------------------------------------------------------
# track and overlay (no model)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tracker", ["static", "flow"])
def test_track_and_overlay_draws_masks_where_they_are(tracker, sample_clip, tmp_path):
    from garvideo.demos.track_and_overlay import track_and_overlay

    masks = load_mask(sample_clip.prompt_mask)
    res = track_and_overlay(
        sample_clip.video_path, masks, tmp_path / "o.mp4", tracker=tracker, ground_truth=sample_clip.gt_all()
    )
    assert res.tracker == tracker and res.object_ids == [1, 2] and res.num_frames == sample_clip.num_frames
    check_overlay(res.overlay, sample_clip, lambda t: res.track.masks(t))
    if tracker == "static":
        # the static tracker repeats the prompt: its masks are frame 0's and its score is computable by hand
        for t in (5, 30):
            for k, oid in enumerate(res.object_ids):
                assert np.array_equal(res.track.mask(t, oid), masks[k])
        gt = sample_clip.gt_all()
        for k, oid in enumerate(res.object_ids):
            ious = [
                (gt[t, k] & gt[0, k]).sum() / (gt[t, k] | gt[0, k]).sum() if gt[t, k].any() else 0.0
                for t in range(1, sample_clip.num_frames)
            ]
            assert res.mean_iou[oid] == pytest.approx(np.mean(ious), abs=1e-6)
    else:  # flow follows the objects: it must beat the static baseline by far on this clip
        assert min(res.mean_iou.values()) > 0.4


def test_track_and_overlay_script_on_a_users_clip(sample_clip, tmp_path, capsys):
    """``--video/--mask`` (here a frame folder and one object per file) instead of the sample clip."""
    from garvideo.demos.track_and_overlay import main

    out = tmp_path / "mine.mp4"
    rc = main(
        [
            "--video",
            str(sample_clip.frames_dir),
            "--mask",
            str(sample_clip.object_masks[1]),
            "--tracker",
            "static",
            "--overlay",
            str(out),
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "tracked 1 object(s) over 48 frames with static" in text and "IoU" not in text
    mask = load_mask(sample_clip.object_masks[1])[0]
    # a frame folder has no frame rate: the overlay gets render_overlay's default, 25
    check_overlay(out, sample_clip, lambda t: {1: mask}, frames=(0, 20), fps=25.0)


def test_track_and_overlay_script_default_sample_clip(tmp_path, capsys):
    from garvideo.demos.track_and_overlay import main

    assert main(["--out", str(tmp_path), "--tracker", "static"]) == 0
    text = capsys.readouterr().out
    assert "mean IoU with the ground truth" in text
    assert (tmp_path / "overlay.mp4").is_file() and (tmp_path / "sample" / "clip.mp4").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--mask", "m.png"], "give --video too"),
        (["--video", "{clip}"], "--mask: give the object(s)"),
        (["--video", "{clip}", "--mask", "{missing}"], "no such mask file"),
        (["--video", "{clip}", "--mask", "{mask}", "--frame", "99"], "frame index 99 is out of range"),
        (["--video", "{missing}", "--mask", "{mask}"], "no such file or folder"),
    ],
)
def test_demo_scripts_report_bad_input_in_one_line(argv, message, sample_clip, tmp_path, capsys):
    from garvideo.demos.track_and_overlay import main

    subst = {
        "clip": str(sample_clip.video_path),
        "mask": str(sample_clip.prompt_mask),
        "missing": str(tmp_path / "missing.png"),
    }
    assert main([a.format(**subst) for a in argv] + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


# ----------------------------------------------------------------------------------------------------
# describe and ask with the tiny GAR
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random GAR (``make_tiny_model``, the path real checkpoints load through) whose greedy
    output on the sample clip is visible text: with seed 0 it is only newlines, stripped to ""."""
    from garvideo.model import make_tiny_model

    return Path(make_tiny_model(tmp_path_factory.mktemp("tiny_gar_seed1"), seed=1))


@pytest.fixture(scope="module")
def pipeline(tiny_model):
    from garvideo.pipeline import GarVideo

    return GarVideo(
        model=str(tiny_model), tracker="flow", num_frames=NUM_FRAMES, max_new_tokens=MAX_NEW_TOKENS
    )


def test_describe_clip_burns_the_description_into_the_overlay(sample_clip, tiny_model, pipeline, tmp_path):
    from garvideo.demos.describe_clip import describe_clip

    masks = load_mask(sample_clip.prompt_mask)[:1]
    pieces: list[str] = []
    res = describe_clip(
        sample_clip.video_path,
        masks,
        tmp_path / "d.mp4",
        model=pipeline.bundle,
        tracker="flow",
        num_frames=NUM_FRAMES,
        max_new_tokens=MAX_NEW_TOKENS,
        on_text=pieces.append,
    )
    expected = pipeline.describe(sample_clip.video_path, masks=masks, frame=0, max_new_tokens=MAX_NEW_TOKENS)
    assert res.text == expected.text and res.text.strip()
    assert "".join(pieces).strip() == res.text.strip()  # streamed as generated
    assert res.frames == list(expected.frames) and len(res.frames) == NUM_FRAMES
    assert res.tracker == "flow"
    clip = pipeline.prepare(sample_clip.video_path, masks=masks, frame=0, track_all_frames=True)
    check_overlay(res.overlay, sample_clip, lambda t: clip.track.masks(t), caption=True)


def test_relationship_question_two_objects(sample_clip, tiny_model, pipeline, tmp_path):
    from garvideo.demos.relationship_question import DEFAULT_QUESTION, ask_about_objects

    masks = load_mask(sample_clip.prompt_mask)
    questions = [DEFAULT_QUESTION, "Which one leaves the frame, <object0> or <object1>?"]
    streamed: list[str] = []
    res = ask_about_objects(
        sample_clip.video_path,
        masks,
        questions,
        tmp_path / "q.mp4",
        model=pipeline.bundle,
        tracker="flow",
        num_frames=NUM_FRAMES,
        max_new_tokens=MAX_NEW_TOKENS,
        on_text=streamed.append,
    )
    assert res.questions == questions and len(res.answers) == 2 and res.letters == [None, None]
    assert all(a.strip() in "".join(streamed) for a in res.answers)  # streamed as generated
    clip = pipeline.prepare(sample_clip.video_path, masks=masks, frame=0, track_all_frames=True)
    assert res.answers[0] == pipeline.ask(clip, questions[0]).text
    assert res.answers[0].strip()
    check_overlay(res.overlay, sample_clip, lambda t: clip.track.masks(t), caption=True)


def test_relationship_question_multiple_choice_on_a_static_track(sample_clip, pipeline, tmp_path):
    from garvideo.demos.relationship_question import ask_about_objects

    res = ask_about_objects(
        sample_clip.video_path,
        load_mask(sample_clip.prompt_mask),
        ["Which one leaves the frame?"],
        tmp_path / "m.mp4",
        options=["<object0>", "<object1>"],
        model=pipeline.bundle,
        tracker="static",
        num_frames=NUM_FRAMES,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    assert res.tracker == "static" and res.letters[0] in (None, "A", "B") and res.answers[0].strip()
    with open_video(res.overlay) as v:
        assert (v.num_frames, v.width) == (48, 320) and v.height > 240  # the caption band below


def test_relationship_question_printer_interleaves_questions():
    from garvideo.demos.relationship_question import _QuestionPrinter

    out: list[str] = []
    printer = _QuestionPrinter(["q1", "q2", "q3"], out.append)
    for piece in ["a", "b", "\n", "c", "\n", "d", "\n"]:
        printer(piece)
    assert "".join(out) == "ab\nQ: q2\nA: c\nQ: q3\nA: d\n"


def test_relationship_question_script_needs_two_objects(sample_clip, tiny_model, tmp_path, capsys):
    from garvideo.demos.relationship_question import main

    rc = main(
        [
            "--video",
            str(sample_clip.video_path),
            "--mask",
            str(sample_clip.object_masks[0]),
            "--model",
            str(tiny_model),
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 2
    assert "at least 2 objects" in capsys.readouterr().err


def test_describe_script_without_weights_still_writes_the_tracks(tmp_path, capsys, monkeypatch):
    """No weights (offline, nothing on disk): the overlay of the tracks is written, then exit 2 with
    a message saying how to get the weights."""
    from garvideo.demos.describe_clip import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(["--model", "nobody/GAR-missing", "--tracker", "static", "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "not available offline" in err and "describe.mp4" in err
    with open_video(tmp_path / "describe.mp4") as v:
        assert v.num_frames == 48
