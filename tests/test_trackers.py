"""The tracker interface, the static and flow backends, build_tracker and bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from garvideo.errors import InputError
from garvideo.eval.vos import evaluate_sequence, jaccard
from garvideo.trackers import FlowTracker, Prompt, StaticTracker, build_tracker
from garvideo.video import open_video


def _prompts(clip, frame):
    return [Prompt(obj_id=i, frame=frame, mask=m) for i, m in enumerate(clip.gt(frame), start=1)]


@pytest.fixture(scope="module")
def flow_mid(sample_clip):
    """Flow tracker on the synthetic clip, both objects prompted on the middle frame."""
    with open_video(sample_clip.frames_dir) as video:
        return build_tracker("flow").track(video, _prompts(sample_clip, 24))


def test_flow_tracks_both_ways_from_a_middle_frame(sample_clip, flow_mid):
    r = flow_mid
    assert r.tracker == "flow"
    assert r.frames == list(range(sample_clip.num_frames))
    assert r.object_ids == [1, 2]
    for o in (1, 2):
        assert r.mask(24, o).sum() == sample_clip.gt(24)[o - 1].sum()  # the prompt itself
        js = [jaccard(sample_clip.gt(f)[o - 1], r.mask(f, o)) for f in r.frames]
        assert np.mean(js) > 0.7, (o, np.round(js, 2))
        assert np.mean(js[:24]) > 0.6 and np.mean(js[25:]) > 0.6  # backward and forward halves
    assert r.mask(3, 1).dtype == bool and r.mask(3, 1).shape == (sample_clip.height, sample_clip.width)


def test_object_leaving_the_frame_is_absent_not_an_error(sample_clip, flow_mid):
    r = flow_mid
    gone = [f for f in r.frames if not sample_clip.gt(f)[1].any()]
    assert gone, "the sample clip's square should leave the frame"
    for f in gone:
        assert not r.present(f, 2)
        assert not r.mask(f, 2).any()
        assert r.score(f, 2) < 0.5
    assert all(r.present(f, 2) for f in range(gone[0] - 3))
    assert all(r.present(f, 1) for f in r.frames)


def test_flow_beats_static(sample_clip, flow_mid):
    with open_video(sample_clip.video_path) as video:  # the mp4 this time
        st = StaticTracker().track(video, _prompts(sample_clip, 24))
    assert st.tracker == "static"
    for o in (1, 2):
        assert st.mask(0, o).sum() == sample_clip.gt(24)[o - 1].sum()  # copied as is
        j_static = np.mean([jaccard(sample_clip.gt(f)[o - 1], st.mask(f, o)) for f in st.frames])
        j_flow = np.mean([jaccard(sample_clip.gt(f)[o - 1], flow_mid.mask(f, o)) for f in flow_mid.frames])
        assert j_flow > j_static + 0.3


def test_flow_reacquires_the_disc_after_the_post(sample_clip):
    """Prompted on frame 0, the disc passes behind the post (frames ~18-30): the mask must follow
    the part re-emerging on the right, not stay stuck to the post's left edge."""
    with open_video(sample_clip.frames_dir) as video:
        r = build_tracker("flow").track(video, _prompts(sample_clip, 0))
    after = range(32, sample_clip.num_frames)
    j1 = [jaccard(sample_clip.gt(f)[0], r.mask(f, 1)) for f in after]
    j2 = [jaccard(sample_clip.gt(f)[1], r.mask(f, 2)) for f in after]
    assert np.mean(j1) > 0.85 and min(j1) > 0.7, np.round(j1, 2)  # 0.96 / 0.94 measured
    assert np.mean(j2) > 0.75, np.round(j2, 2)  # 0.94 measured, 0.85 before (frames 39+ empty: 1.0)
    j1_all = [jaccard(sample_clip.gt(f)[0], r.mask(f, 1)) for f in range(1, sample_clip.num_frames)]
    assert np.mean(j1_all) > 0.85, np.round(j1_all, 2)  # 0.92 measured (0.70 before re-seeding)
    assert all(r.present(f, 1) for f in r.frames)


def _texture(rng, h, w, scale, lo, hi):
    """(h, w, 3) float smooth random colour texture in [lo, hi] (cells of ``scale`` pixels)."""
    t = rng.random((h // scale + 2, w // scale + 2, 3)).astype(np.float32)
    t = cv2.resize(t, (w + 2 * scale, h + 2 * scale), interpolation=cv2.INTER_CUBIC)[:h, :w]
    return np.clip(lo + (hi - lo) * t, 0, 255)


def _write_frames(folder, frames):
    for f, img in enumerate(frames):
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{f:05d}.png")


def test_flow_follows_a_small_fast_object(tmp_path):
    """A 24-pixel square moving 8 px a frame over a textured background (640x360): flow at a
    quarter resolution moves 32-pixel patches as one and leaves the mask behind; flow on the crop
    around the object at full working resolution follows it (mean J 0.85 measured; 0.09 without the
    crop flow, 0.60 without the motion term, which releases the trail the square leaves)."""
    rng = np.random.default_rng(1)
    h, w, n = 360, 640, 20
    bg = _texture(rng, h, w, 16, 60, 200)
    obj = _texture(rng, 24, 24, 4, 0, 255) * 0.5 + np.array([20, 40, 200]) * 0.5
    frames, gts = [], []
    for f in range(n):
        x, y = 40 + 8 * f, 160 + 2 * f
        img = bg.copy()
        img[y : y + 24, x : x + 24] = obj
        m = np.zeros((h, w), bool)
        m[y : y + 24, x : x + 24] = True
        frames.append(img)
        gts.append(m)
    _write_frames(tmp_path, frames)
    with open_video(tmp_path) as video:
        r = build_tracker("flow").track(video, [Prompt(1, 0, mask=gts[0])])
    js = [jaccard(gts[f], r.mask(f, 1)) for f in range(1, n)]
    assert np.mean(js) > 0.45 and min(js) > 0.3, np.round(js, 2)


def test_flow_does_not_leak_into_a_lookalike_neighbour(tmp_path):
    """A red disc slides along the top edge of a static square of the same red (touching it for
    several frames): the colour histograms cannot tell them apart; the bilateral colour-and-position
    term and the motion term (the square is static, the disc is not) can. Measured: at most 0.02 of
    the square taken and mean J 0.98; 0.03 without the bilateral term, 0.10 without the motion term,
    0.18 and J 0.94 without either."""
    rng = np.random.default_rng(2)
    h, w, n = 360, 640, 30
    bg = _texture(rng, h, w, 24, 90, 160) * np.array([0.6, 1.0, 0.7])
    tex = _texture(rng, h, w, 6, -25, 25)
    red = np.array([200, 40, 40])
    yy, xx = np.mgrid[0:h, 0:w]
    square = (yy >= 190) & (yy < 290) & (xx >= 300) & (xx < 400)
    frames, discs = [], []
    for f in range(n):
        disc = (xx - 150 - 8 * f) ** 2 + (yy - 150) ** 2 <= 40**2
        img = bg.copy()
        img[square] = red + tex[square]
        img[disc] = red + np.roll(tex, 8 * f, axis=1)[disc]  # the disc's texture moves with it
        frames.append(img)
        discs.append(disc)
    _write_frames(tmp_path, frames)
    with open_video(tmp_path) as video:
        r = build_tracker("flow").track(video, [Prompt(1, 0, mask=discs[0])])
    leak = [(r.mask(f, 1) & square).sum() / square.sum() for f in range(n)]
    js = [jaccard(discs[f], r.mask(f, 1)) for f in range(1, n)]
    assert max(leak) < 0.15, np.round(leak, 2)
    assert np.mean(js) > 0.85 and min(js) > 0.7, np.round(js, 2)


def test_result_helpers(sample_clip, flow_mid):
    r = flow_mid
    ids = r.id_map(10)
    assert ids.dtype == np.uint8 and set(np.unique(ids)) <= {0, 1, 2}
    assert np.array_equal(ids == 1, r.mask(10, 1) & ~r.mask(10, 2))
    assert r.area(10, 1) == r.mask(10, 1).sum()
    s = r.summary()
    assert s["tracker"] == "flow" and s["frames"] == sample_clip.num_frames
    assert s["objects"]["object1"] == {"id": 2, "visible_frames": len(r.visible_frames(2))}
    assert set(r.timings) >= {"total", "decode", "track", "frames_per_second"}
    with pytest.raises(KeyError):
        r.mask(10, 7)
    with pytest.raises(KeyError):
        r.mask(999, 1)


def test_frames_and_stride_keep_only_requested(sample_clip):
    with open_video(sample_clip.frames_dir) as video:
        full = build_tracker("flow").track(video, _prompts(sample_clip, 0), end=20)
        keys = build_tracker("flow").track(video, _prompts(sample_clip, 0), frames=[5, 12, 19])
        strided = build_tracker("flow").track(video, _prompts(sample_clip, 0), start=2, end=20, stride=6)
    assert keys.frames == [5, 12, 19]
    assert keys.frames_visited == 20  # propagated through every frame in between
    assert strided.frames == [2, 8, 14]
    for f in keys.frames:  # same propagation, same masks
        assert np.array_equal(keys.mask(f, 1), full.mask(f, 1))
    assert full.frames == list(range(20))


def test_prompts_on_several_frames_take_the_nearest(sample_clip):
    gt = sample_clip.gt
    with open_video(sample_clip.frames_dir) as video:
        r = build_tracker("static").track(
            video, [Prompt(1, 5, mask=gt(5)[0]), Prompt(1, 30, mask=gt(30)[0]), Prompt(2, 10, mask=gt(10)[1])]
        )
    assert np.array_equal(r.mask(0, 1), gt(5)[0])
    assert np.array_equal(r.mask(17, 1), gt(5)[0])  # nearer to 5
    assert np.array_equal(r.mask(18, 1), gt(30)[0])  # nearer to 30
    assert np.array_equal(r.mask(47, 1), gt(30)[0])
    assert np.array_equal(r.mask(0, 2), gt(10)[1])


def test_build_tracker_auto_picks_flow_without_checkpoint(monkeypatch, caplog):
    monkeypatch.delenv("GARVIDEO_SAM2_CHECKPOINT", raising=False)
    monkeypatch.setattr("garvideo.trackers.sam2_backend.cached_hub_checkpoint", lambda: None)
    with caplog.at_level("INFO", logger="garvideo.trackers"):
        t = build_tracker("auto")
    assert isinstance(t, FlowTracker) and t.name == "flow"
    assert "auto: flow" in caplog.text
    assert t.selection.startswith("auto: flow")
    with pytest.raises(InputError):
        build_tracker("nope")
    with pytest.raises(InputError):
        build_tracker("flow", bogus=1)


def test_auto_with_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        build_tracker("auto", sam2_checkpoint=str(tmp_path / "missing.pt"))


# -- bad input ------------------------------------------------------------------------------------
def test_bad_prompts(sample_clip):
    h, w = sample_clip.height, sample_clip.width
    ok = sample_clip.gt(0)[0]
    t = build_tracker("flow")
    with open_video(sample_clip.frames_dir) as video:
        with pytest.raises(InputError, match="differs from the video"):
            t.track(video, [Prompt(1, 0, mask=np.ones((h + 1, w), bool))])
        with pytest.raises(InputError, match="empty"):
            t.track(video, [Prompt(1, 0, mask=np.zeros((h, w), bool))])
        with pytest.raises(InputError, match="out of range"):
            t.track(video, [Prompt(1, sample_clip.num_frames, mask=ok)])
        with pytest.raises(InputError, match="out of range"):
            t.track(video, [Prompt(1, -1, mask=ok)])
        with pytest.raises(InputError, match="mask prompts only"):
            t.track(video, [Prompt(1, 0, points=np.array([[5.0, 5.0]]), labels=np.array([1]))])
        with pytest.raises(InputError, match="two prompts"):
            t.track(video, [Prompt(1, 0, mask=ok), Prompt(1, 0, mask=ok)])
        with pytest.raises(InputError, match="at least one"):
            t.track(video, [])
        with pytest.raises(InputError):
            t.track(video, [Prompt(1, 0, mask=ok)], frames=[0, 999])
        with pytest.raises(InputError):
            t.track(video, [Prompt(1, 0, mask=ok)], stride=0)


# -- real data ------------------------------------------------------------------------------------
def test_flow_on_a_davis_sequence(shared_dir):
    root = shared_dir / "data" / "davis2016"
    seq = "blackswan"
    gt = [np.array(Image.open(p)) > 127 for p in sorted((root / "Annotations" / "480p" / seq).glob("*.png"))]
    with open_video(root / "JPEGImages" / "480p" / seq) as video:
        r = build_tracker("flow").track(video, [Prompt(1, 0, mask=gt[0])], end=25)
        st = build_tracker("static").track(video, [Prompt(1, 0, mask=gt[0])], end=25)
    flow = evaluate_sequence(gt[:25], [r.mask(f, 1) for f in r.frames])
    static = evaluate_sequence(gt[:25], [st.mask(f, 1) for f in st.frames])
    assert flow.jf > 0.8, flow  # measured 0.9+ on the whole sequence (bench/track.py)
    assert static.jf < flow.jf - 0.2


def test_backward_pass_streams_in_bounded_chunks(sample_clip):
    from garvideo.trackers import base

    calls = []

    class Recording:
        def __init__(self, video):
            self.v = video
            self.num_frames, self.height, self.width = video.num_frames, video.height, video.width

        def frames(self, indices):
            calls.append(list(indices))
            yield from self.v.frames(indices)

    seen = []
    with open_video(sample_clip.frames_dir) as video:
        r = StaticTracker().track(
            Recording(video),
            [Prompt(1, 40, mask=sample_clip.gt(40)[0])],
            progress=lambda done, total: seen.append((done, total)),
        )
    assert r.frames == list(range(sample_clip.num_frames))
    assert seen[-1] == (49, 49)  # forward 40..47 (8 frames) + backward 40..0 (41 frames)
    assert calls[0] == list(range(40, 48))
    backward = calls[1:]
    assert all(len(c) <= base.BACKWARD_CHUNK and c == sorted(c) for c in backward)  # read forwards, in chunks
    assert sorted(i for c in backward for i in c) == list(range(41))


def test_result_storage_round_trips_any_mask():
    from garvideo.trackers.base import TrackResult

    rng = np.random.default_rng(0)
    r = TrackResult(tracker="static", height=13, width=17, object_ids=[1])
    masks = [rng.random((13, 17)) < p for p in (0.0, 1.0, 0.5, 0.05)]
    for f, m in enumerate(masks):
        r._put(f, 1, m, 1.0)
    for f, m in enumerate(masks):
        assert np.array_equal(r.mask(f, 1), m)
        assert r.area(f, 1) == m.sum()
    assert not r.present(0, 1) and r.present(1, 1)


def test_robust_affine_ignores_a_second_moving_object():
    """The background model: an affine flow field is recovered exactly although 30 % of the samples
    move otherwise (another object), and the noise scale stays at the noise level."""
    from garvideo.trackers.flow.motion import robust_affine

    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 400, 2000).astype(np.float32), rng.uniform(0, 300, 2000).astype(np.float32)
    A = np.array([[-3.0, 1.0], [0.01, 0.0], [0.0, -0.02]])
    uv = np.stack([np.ones_like(x), x, y], 1) @ A + rng.normal(0, 0.1, (2000, 2))
    uv[:600] += np.array([7.0, -4.0])  # a second object
    fit, scale = robust_affine(x, y, uv.astype(np.float32))
    assert np.abs(fit - A).max() < 0.03, fit
    assert 0.3 <= scale < 0.5  # the floor (0.3 px); the inlier noise is 0.1 x sqrt(2)


def test_motion_logodds_shape():
    """-2 for background motion, 0 at the midpoint, +positive at the object's own motion, back to 0
    for motion far beyond the object's."""
    from garvideo.trackers.flow.motion import motion_logodds

    scale, m_obj = 0.5, 6.5  # tau = 3.5
    r = np.array([0.0, 1.75, 3.5, 5.0, 6.5, 9.75, 13.0, 20.0], np.float32)
    got = motion_logodds(r, scale, m_obj, 0.5)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [-2.0, -1.0, 0.0, 0.25, 0.5, 0.25, 0.0, 0.0], atol=1e-6)


def test_flow_drops_a_leak_that_moves_with_the_background(tmp_path):
    """The camera pans left 3 px a frame over a textured scene; a textured disc moves right 5 px a
    frame. The prompt also covers a patch of the scene behind the disc (a sloppy prompt: the patch's
    colours are in the object model, so colour cannot reject it). The patch moves like the
    background, the disc does not: the motion term drops the patch (second half of the clip: at most
    0.15 of it kept, disc J 0.64-0.71 measured), the tracker without it keeps it (0.96-0.97 kept, J
    0.25-0.32)."""
    rng = np.random.default_rng(4)
    h, w, n, pan, v = 240, 400, 24, 3, 5
    scene = _texture(rng, h, w + pan * n, 12, 40, 220)
    disc_tex = _texture(rng, h, w, 6, 0, 255) * 0.5 + np.array([200, 60, 40]) * 0.5
    yy, xx = np.mgrid[0:h, 0:w]
    frames, discs, patches = [], [], []
    for f in range(n):
        img = scene[:, pan * f : pan * f + w].copy()
        disc = (xx - 170 - v * f) ** 2 + (yy - 120) ** 2 <= 35**2
        img[disc] = np.roll(disc_tex, v * f, axis=1)[disc]  # the disc's texture moves with it
        patch = (yy >= 90) & (yy < 150) & (xx >= 85 - pan * f) & (xx < 137 - pan * f) & ~disc
        frames.append(img)
        discs.append(disc)
        patches.append(patch)
    _write_frames(tmp_path, frames)
    prompt = discs[0] | patches[0]
    kept, js = {}, {}
    for motion in (1.0, 0.0):
        with open_video(tmp_path) as video:
            r = build_tracker("flow", motion=motion).track(video, [Prompt(1, 0, mask=prompt)])
        kept[motion] = [(r.mask(f, 1) & patches[f]).sum() / max(patches[f].sum(), 1) for f in range(n)]
        js[motion] = [jaccard(discs[f], r.mask(f, 1)) for f in range(n // 2, n)]
    assert max(kept[1.0][n // 2 :]) < 0.2, np.round(kept[1.0], 2)
    assert min(kept[0.0][n // 2 :]) > 0.5, np.round(kept[0.0], 2)  # the ablation: the leak stays
    assert min(js[1.0]) > 0.6 and np.mean(js[1.0]) > np.mean(js[0.0]) + 0.2, (js[1.0], js[0.0])


def test_flow_keeps_two_crossing_objects_apart(tmp_path):
    """Two textured discs of different colours cross over a static textured background, the red one
    passing in front of the blue one. Each object is tracked on its own: the masks follow their own
    disc through the crossing and do not swap or merge afterwards (last 8 frames, measured: J 0.85-0.95
    for the front disc, 0.97-0.99 for the one that was hidden, 0 overlap of object 1 with disc 2)."""
    rng = np.random.default_rng(5)
    h, w, n = 300, 560, 36
    bg = _texture(rng, h, w, 20, 70, 170) * np.array([0.8, 1.0, 0.8])
    tex = _texture(rng, h, w, 5, -30, 30)
    yy, xx = np.mgrid[0:h, 0:w]
    frames, gts = [], []
    for f in range(n):
        a = (xx - 80 - 11 * f) ** 2 + (yy - 140) ** 2 <= 38**2  # red, in front
        b = (xx - 480 + 11 * f) ** 2 + (yy - 165) ** 2 <= 38**2  # blue, behind
        img = bg.copy()
        img[b] = np.array([40, 70, 210]) + np.roll(tex, -11 * f, axis=1)[b]
        img[a] = np.array([210, 50, 40]) + np.roll(tex, 11 * f, axis=1)[a]
        frames.append(img)
        gts.append((a, b & ~a))
    _write_frames(tmp_path, frames)
    with open_video(tmp_path) as video:
        r = build_tracker("flow").track(video, [Prompt(1, 0, mask=gts[0][0]), Prompt(2, 0, mask=gts[0][1])])
    after = range(n - 8, n)  # well past the crossing (frames 14-22)
    ja = [jaccard(gts[f][0], r.mask(f, 1)) for f in after]
    jb = [jaccard(gts[f][1], r.mask(f, 2)) for f in after]
    swapped = [jaccard(gts[f][1], r.mask(f, 1)) for f in after]
    assert min(ja) > 0.8, np.round(ja, 2)
    assert min(jb) > 0.6, np.round(jb, 2)
    assert max(swapped) < 0.05, np.round(swapped, 2)


def test_parse_flow_options_types_and_errors():
    from garvideo.trackers import parse_flow_options

    got = parse_flow_options(
        ["work_size=640", " motion = 0.5 ", "refine=false", "consistency=1", "preset=fast"]
    )
    assert got == {"work_size": 640, "motion": 0.5, "refine": False, "consistency": True, "preset": "fast"}
    assert isinstance(got["work_size"], int) and isinstance(got["motion"], float)
    assert parse_flow_options([]) == {}
    for item, needle, field in [
        ("bogus=1", "unknown flow option", "flow_options"),
        ("refine=maybe", "refine takes a bool", "flow_options"),
        ("work_size=6.5", "work_size takes a int", "flow_options"),
        ("=3", "KEY=VALUE", "flow_options"),
        ("preset=slowest", "preset: must be one of", "preset"),
    ]:
        with pytest.raises(InputError, match=needle) as exc:
            parse_flow_options([item])
        assert exc.value.source == field  # a library field (the CLI names the flag: cli/_errors.py)
