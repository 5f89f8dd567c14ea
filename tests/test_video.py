"""garvideo.video: files and frame folders, on-demand decoding, and every bad-input case."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from garvideo.errors import InputError
from garvideo.video import OpenCVVideo, open_video


def test_mp4_and_frame_folder_agree(sample_clip):
    with open_video(sample_clip.video_path) as vid, open_video(sample_clip.frames_dir) as folder:
        assert vid.info.backend == "decord"
        assert folder.info.backend == "frames"
        for v in (vid, folder):
            assert (v.num_frames, v.height, v.width) == (48, 240, 320)
            assert len(v) == 48
        assert vid.fps == pytest.approx(12.0)
        a, b = vid.frame(30), folder.frame(30)
        assert a.shape == b.shape == (240, 320, 3) and a.dtype == np.uint8
        # lossy mp4 vs lossless png: close, not equal
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 8


def test_frames_streams_only_requested_in_order(sample_clip):
    with open_video(sample_clip.frames_dir) as v:
        got = [(i, f.shape) for i, f in v.frames([5, 2, 40])]
        assert got == [(5, (240, 320, 3)), (2, (240, 320, 3)), (40, (240, 320, 3))]
        assert sum(1 for _ in v.frames()) == 48
        np.testing.assert_array_equal(next(iter(v)), v.frame(0))


def test_opencv_fallback_matches_decord(sample_clip):
    with open_video(sample_clip.video_path) as d:
        o = OpenCVVideo(sample_clip.video_path)
        assert o.num_frames == d.num_frames
        for i in (0, 17, 3, 47):  # a backward jump forces a seek
            assert np.abs(o.frame(i).astype(int) - d.frame(i).astype(int)).mean() < 2
        o.close()


def test_video_backend_env_chooses_the_reader_for_auto(sample_clip, monkeypatch):
    """$GARVIDEO_VIDEO_BACKEND picks the reader "auto" means (decord reads ahead of a slow consumer:
    about 0.7 GB more than OpenCV at 1280x720); an explicit backend wins; a bad value is one error."""
    monkeypatch.setenv("GARVIDEO_VIDEO_BACKEND", "opencv")
    with open_video(sample_clip.video_path) as v:
        assert v.info.backend == "opencv" and v.num_frames == 48
    with open_video(sample_clip.video_path, backend="decord") as v:
        assert v.info.backend == "decord"
    monkeypatch.setenv("GARVIDEO_VIDEO_BACKEND", "ffmpeg")
    with pytest.raises(InputError, match="GARVIDEO_VIDEO_BACKEND.*unknown video backend 'ffmpeg'"):
        open_video(sample_clip.video_path)


def test_frame_index_out_of_range(sample_clip):
    with open_video(sample_clip.frames_dir) as v:
        with pytest.raises(InputError, match="frame index 48 is out of range"):
            v.frame(48)
        with pytest.raises(InputError, match="out of range"):
            list(v.frames([0, -1]))


def test_missing_path(tmp_path):
    with pytest.raises(InputError) as e:
        open_video(tmp_path / "nope.mp4")
    assert "nope.mp4" in str(e.value) and "no such file" in str(e.value)


def test_corrupt_and_empty_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError, match="unreadable or corrupt video"):
        open_video(bad)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_video(empty)


def test_empty_folder_and_mixed_sizes(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no frames in folder"):
        open_video(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (32, 24)).save(mixed / "00000.jpg")
    Image.new("RGB", (30, 24)).save(mixed / "00001.jpg")
    with pytest.raises(InputError, match="mixed sizes"):
        open_video(mixed)


def test_unreadable_frame_in_folder(tmp_path, sample_clip):
    folder = tmp_path / "frames"
    shutil.copytree(sample_clip.frames_dir, folder)
    (folder / "00003.png").write_bytes(b"garbage")
    with pytest.raises(InputError) as e:
        open_video(folder)
    assert "00003.png" in str(e.value)


def test_folder_is_sorted_by_name_and_gray_frames_become_rgb(tmp_path):
    for name, val in (("b.png", 200), ("a.png", 10), ("c.jpg", 100)):
        Image.new("L", (8, 6), val).save(tmp_path / name)
    with open_video(tmp_path) as v:
        assert [int(f[0, 0, 0]) for f in v] == [10, 200, pytest.approx(100, abs=2)]
        assert v.frame(0).shape == (6, 8, 3)


def test_davis_folder(shared_dir):
    with open_video(shared_dir / "data/davis2016/JPEGImages/480p/blackswan") as v:
        assert (v.num_frames, v.width, v.height) == (50, 854, 480)
