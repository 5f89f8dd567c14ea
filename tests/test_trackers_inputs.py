"""The lower-level Python API takes what a user would pass (issue 19, items 7 and 8):
``build_tracker("flow").track("clip.mp4", prompts)``, ``track(video, [mask])``, ``load_mask()``'s
list in a :class:`Prompt`, an ``(N, H, W)`` stack — or refuses it with an :class:`InputError` saying
what to pass; and an image given as the video is named as such, with how to pass it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from garvideo.errors import InputError
from garvideo.masks import load_mask
from garvideo.trackers import Prompt, build_tracker
from garvideo.video import open_video


@pytest.fixture(scope="module")
def reference(sample_clip):
    """The static tracker's result with an opened video and explicit Prompts (what always worked)."""
    masks = load_mask(sample_clip.prompt_mask)
    with open_video(sample_clip.video_path) as v:
        prompts = [Prompt(obj_id=i, frame=0, mask=m) for i, m in enumerate(masks, 1)]
        res = build_tracker("static").track(v, prompts, frames=[0, 5])
    return masks, res


def _same(a, b):
    assert a.object_ids == b.object_ids and a.frames == b.frames
    for f in a.frames:
        for o in a.object_ids:
            assert np.array_equal(a.mask(f, o), b.mask(f, o))


@pytest.mark.parametrize("form", ["path", "path-str", "folder"])
def test_a_path_is_a_clip(sample_clip, reference, form):
    masks, ref = reference
    video = {
        "path": sample_clip.video_path,
        "path-str": str(sample_clip.video_path),
        "folder": sample_clip.frames_dir,
    }
    res = build_tracker("static").track(
        video[form], [Prompt(obj_id=i, frame=0, mask=m) for i, m in enumerate(masks, 1)], frames=[0, 5]
    )
    _same(res, ref)


def test_masks_without_prompts_are_objects_on_frame_0(sample_clip, reference):
    masks, ref = reference
    tracker = build_tracker("static")
    clip = sample_clip.video_path
    _same(tracker.track(clip, masks, frames=[0, 5]), ref)  # a list of (H, W) masks (load_mask's)
    _same(tracker.track(clip, np.stack(masks), frames=[0, 5]), ref)  # an (N, H, W) stack
    _same(tracker.track(clip, sample_clip.prompt_mask, frames=[0, 5]), ref)  # a mask file
    one = tracker.track(clip, masks[0], frames=[0])  # one (H, W) mask
    assert one.object_ids == [1] and np.array_equal(one.mask(0, 1), ref.mask(0, 1))
    files = tracker.track(clip, list(sample_clip.object_masks), frames=[0, 5])  # mask files, one object each
    assert files.object_ids == [1, 2]


def test_a_prompt_with_load_mask_of_a_one_object_file(sample_clip):
    one = load_mask(sample_clip.object_masks[0])  # a list of one (H, W) mask: (1, H, W) as an array
    res = build_tracker("static").track(
        sample_clip.video_path, [Prompt(obj_id=1, frame=0, mask=one)], frames=[0]
    )
    assert np.array_equal(res.mask(0, 1), one[0])


@pytest.mark.parametrize(
    "prompts, says",
    [
        ([Prompt(obj_id=1, frame=0, mask=np.zeros((2, 240, 320), bool))], "give one Prompt per object"),
        ("mix", "a mix of Prompts and masks"),
        ([{"mask": "m.png"}], "pass a Prompt, a list of Prompts"),
        (42, "pass a Prompt, a list of Prompts"),
        (np.zeros((1, 1, 240, 320), bool), "a mask array of shape (1, 1, 240, 320)"),
    ],
)
def test_what_cannot_be_a_prompt_is_refused_saying_what_to_pass(sample_clip, prompts, says):
    if isinstance(prompts, str) and prompts == "mix":
        m = load_mask(sample_clip.object_masks[0])[0]
        prompts = [Prompt(obj_id=1, frame=0, mask=m), m]
    with pytest.raises(InputError) as info:
        build_tracker("static").track(sample_clip.video_path, prompts)
    assert says in str(info.value)


def test_what_cannot_be_a_video_is_refused(sample_clip):
    m = load_mask(sample_clip.object_masks[0])
    with pytest.raises(InputError, match="expected a clip: a video file or frame folder path"):
        build_tracker("static").track(np.zeros((4, 240, 320, 3)), m)


def test_an_image_given_as_the_video_says_how_to_pass_it(sample_clip, tmp_path, run_cli):
    image = sample_clip.frames_dir / "00000.png"
    for p in (image, tmp_path / "renamed.mp4"):
        if p != image:
            shutil.copy(image, p)
        with pytest.raises(InputError) as info:
            open_video(p)
        assert "is a single image, not a clip" in str(info.value)
        assert "put it in a folder of its own and pass the folder" in str(info.value)
    rc, _, err = run_cli(
        "track", image, "--mask", sample_clip.object_masks[0], "--tracker", "static", "--json"
    )
    assert rc == 2 and "a single image, not a clip" in err
    # ... and the way it names works: a folder with that one frame
    one = tmp_path / "one-frame"
    one.mkdir()
    shutil.copy(image, one / "00000.png")
    res = build_tracker("static").track(one, sample_clip.object_masks[0])
    assert res.frames == [0]
