"""garvideo.overlay: masks tinted and outlined per object, object names, frame counter and keyframe
badge, captions in a band below the frame, H.264 mp4 output."""

from __future__ import annotations

import numpy as np
import pytest

from garvideo.overlay import draw_masks, object_color, render_overlay
from garvideo.trackers import Prompt, build_tracker
from garvideo.video import open_video


def test_draw_masks_tints_and_outlines_in_object_colours():
    img = np.zeros((60, 80, 3), np.uint8)
    m1 = np.zeros((60, 80), bool)
    m1[10:30, 10:30] = True
    m2 = np.zeros((60, 80), bool)
    m2[35:55, 45:75] = True
    out = draw_masks(img, {1: m1, 2: m2}, alpha=0.5, label=False)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not img.any()  # input untouched
    c1, c2 = np.array(object_color(1)), np.array(object_color(2))
    assert np.abs(out[20, 20].astype(int) - c1 * 0.5).max() <= 1  # tinted inside
    assert np.abs(out[45, 60].astype(int) - c2 * 0.5).max() <= 1
    assert np.array_equal(out[10, 20], c1)  # outline in full colour
    assert not out[2, 2].any() and not out[58, 2].any()  # background untouched
    assert object_color(1) != object_color(2)


def test_labels_and_caption_are_burned_in():
    img = np.zeros((120, 160, 3), np.uint8)
    m = np.zeros((120, 160), bool)
    m[40:80, 40:80] = True
    plain = draw_masks(img, {3: m}, label=False)
    labelled = draw_masks(img, {3: m})
    assert (labelled != plain).any()
    captioned = draw_masks(img, {3: m}, caption="a dog runs across the lawn " * 5, label=False)
    # the caption is a band below the frame: the frame itself (and the object) is untouched
    assert captioned.shape[0] > 120 and captioned.shape[1:] == plain.shape[1:]
    assert np.array_equal(captioned[:120], plain)
    assert (captioned[120:] > 200).any()
    empty = draw_masks(img, {1: np.zeros((120, 160), bool)})
    assert not empty.any()
    with pytest.raises(ValueError):
        draw_masks(img, {1: np.zeros((10, 10), bool)})


def test_render_overlay_writes_an_h264_mp4_that_opencv_decodes(sample_clip, tmp_path):
    import av
    import cv2

    with open_video(sample_clip.frames_dir) as video:
        result = build_tracker("static").track(
            video, [Prompt(1, 0, mask=sample_clip.gt(0)[0])], end=12, stride=2
        )
        out = render_overlay(video, result, tmp_path / "o" / "overlay.mp4", caption="a disc", keyframes=[4])
        plain = {f: {2: sample_clip.gt(f)[1]} for f in range(5)}
        out2 = render_overlay(video, plain, tmp_path / "plain.mp4", frame_info=False)
    assert out.exists() and out2.exists()
    for path in (out, out2):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_tag == "avc1"
            assert stream.codec_context.pix_fmt == "yuv420p"  # what browsers play
    cap = cv2.VideoCapture(str(out))
    decoded = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(decoded) == 6  # frames 0, 2, ..., 10
    h, w = sample_clip.height, sample_clip.width
    assert decoded[0].shape[1] == w and decoded[0].shape[0] > h  # the caption band below the frame
    # the keyframe badge (top right, amber) is on frame 4 (the 3rd rendered) only
    corner = [d[2:10, w - 20 : w - 2].astype(int) for d in decoded]
    amber = [float(np.abs(c - (255, 200, 0)).mean()) for c in corner]
    assert amber[2] < 40 and min(amber[:2] + amber[3:]) > 80, amber
    with open_video(out2) as ov:
        assert (ov.num_frames, ov.width, ov.height) == (5, w, h)
    with open_video(out) as ov:
        frame = ov.frame(0)[:h]
    m = sample_clip.gt(0)[0]
    # The tint shows inside the mask: pixels move towards object 1's colour.
    with open_video(sample_clip.frames_dir) as video:
        orig = video.frame(0).astype(float)
    c = np.array(object_color(1), float)
    d_in = np.abs(frame[m].astype(float) - c).mean()
    assert d_in < np.abs(orig[m] - c).mean()


def test_long_caption_is_wrapped_inside_the_frame():
    # Long unbroken tokens (as a random model emits) must wrap, not run past the right edge.
    frame = np.full((240, 320, 3), 128, np.uint8)
    out = draw_masks(frame, {}, "A: " + "tok68653" * 20)
    band = out[240:]  # the caption band below the frame
    assert (band > 200).any(), "caption text must be drawn"
    assert band[:, -6:].max() <= 128, "no caption pixel within 6 px of the right edge"


@pytest.mark.parametrize("suffix", [".webm", ".avi"])
def test_codec_follows_the_suffix(sample_clip, tmp_path, suffix):
    masks = {f: {1: sample_clip.gt(f)[0]} for f in range(4)}
    with open_video(sample_clip.frames_dir) as video:
        out = render_overlay(video, masks, tmp_path / f"o{suffix}")
    with open_video(out, backend="opencv") as ov:
        assert ov.num_frames == 4 and (ov.width, ov.height) == (sample_clip.width, sample_clip.height)


def test_unsupported_overlay_suffix_is_bad_input(sample_clip, tmp_path):
    from garvideo.errors import InputError

    with (
        open_video(sample_clip.frames_dir) as video,
        pytest.raises(InputError, match="unsupported overlay format"),
    ):
        render_overlay(video, {0: {1: sample_clip.gt(0)[0]}}, tmp_path / "o.gif")


def test_objects_are_labelled_with_their_question_names():
    from garvideo.overlay import object_name

    assert [object_name(i) for i in (1, 2, 3)] == ["object0", "object1", "object2"]
    img = np.zeros((120, 160, 3), np.uint8)
    m = np.zeros((120, 160), bool)
    m[60:100, 60:100] = True
    labelled = draw_masks(img, {1: m})
    plain = draw_masks(img, {1: m}, label=False)
    changed = np.argwhere((labelled != plain).any(axis=2))
    # the label sits just above the mask and is wider than a one-digit id
    assert changed[:, 0].max() < 62 and changed[:, 1].max() - changed[:, 1].min() > 40


def test_h264_overlay_plays_in_chromium(sample_clip, tmp_path):
    """The .mp4 plays in a browser (Debian's chromium, headless, as in the web demo's test)."""
    import shutil

    pytest.importorskip("playwright", reason="playwright is not installed (pip install playwright)")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Debian chromium is not installed (as root: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with open_video(sample_clip.frames_dir) as video:
        masks = {f: {1: sample_clip.gt(f)[0]} for f in range(10)}
        render_overlay(video, masks, tmp_path / "o.mp4", caption="a disc", keyframes=[5])
    (tmp_path / "page.html").write_text('<video id="v" src="o.mp4" muted preload="auto"></video>')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto((tmp_path / "page.html").as_uri())
            page.wait_for_function("document.getElementById('v').readyState >= 2", timeout=15000)
            state = page.evaluate(
                "() => { const v = document.getElementById('v'); "
                "return [v.videoWidth, v.videoHeight, v.duration, v.error === null]; }"
            )
        finally:
            browser.close()
    width, height, duration, no_error = state
    assert no_error and width == sample_clip.width and height > sample_clip.height  # caption band below
    assert duration == pytest.approx(10 / 25, abs=0.05)  # a frame folder: 25 fps


def test_the_label_sits_on_the_largest_part_of_the_mask_not_on_a_stray_fragment():
    """Issue 19, item 6: a small fragment far away (top left) must not pull the label onto it."""
    img = np.zeros((240, 320, 3), np.uint8)
    m = np.zeros((240, 320), bool)
    m[150:230, 200:300] = True  # the object: 8,000 px, bottom right
    m[5:20, 5:20] = True  # a 225-px stray fragment, top left
    changed = np.argwhere((draw_masks(img, {1: m}) != draw_masks(img, {1: m}, label=False)).any(axis=2))
    ys, xs = changed[:, 0], changed[:, 1]
    assert xs.min() >= 195 and ys.min() >= 100  # the label is drawn just above the object
    assert not ((ys < 60) & (xs < 60)).any()  # and nothing near the fragment
    from garvideo.overlay import label_anchor

    assert label_anchor(m) == (200, 150)
