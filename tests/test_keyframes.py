"""Keyframe sampling strategies (garvideo.keyframes)."""

from __future__ import annotations

import numpy as np
import pytest

from garvideo.errors import InputError
from garvideo.keyframes import STRATEGIES, segment_midpoints, select_keyframes


def test_uniform_is_segment_midpoints() -> None:
    # N = 100, K = 8: seg = 99 / 8 = 12.375, midpoints 6.19, 18.56, 30.94, 43.31, 55.69, 68.06, 80.44, 92.81
    assert select_keyframes(100, 8) == [6, 19, 31, 43, 56, 68, 80, 93]
    # N = 9, K = 4: seg = 2, midpoints 1, 3, 5, 7
    assert segment_midpoints(9, 4) == [1, 3, 5, 7]


def test_uniform_short_clip_gives_all_frames() -> None:
    assert select_keyframes(5, 8) == [0, 1, 2, 3, 4]
    assert select_keyframes(1, 8) == [0]


@pytest.mark.parametrize("n", [2, 7, 16, 17, 33, 50, 99, 1000])
@pytest.mark.parametrize("k", [1, 3, 8, 16])
def test_every_strategy_returns_sorted_distinct_in_range(n: int, k: int) -> None:
    vis = np.zeros((n, 2), dtype=bool)
    vis[n // 3 :, 0] = True
    vis[: n // 2, 1] = True
    for strategy in STRATEGIES:
        frames = select_keyframes(n, k, strategy, visible=vis, fps=30.0, per_second=2.0)
        assert frames == sorted(set(frames))
        assert all(0 <= f < n for f in frames)
        if strategy != "fps":
            assert len(frames) == min(n, k), (strategy, n, k, frames)
        else:
            assert 1 <= len(frames) <= k


def test_videorefer_two_stage_scheme() -> None:
    # By hand for N = 100 (VideoRefer: 32 raw midpoints with rounded bounds, then 16 of them).
    seg = 99 / 32
    raw = [(int(np.round(seg * i)) + int(np.round(seg * (i + 1)))) // 2 for i in range(32)]
    seg2 = 31 / 16
    pick = [(int(np.round(seg2 * i)) + int(np.round(seg2 * (i + 1)))) // 2 for i in range(16)]
    assert select_keyframes(100, 16, "videorefer") == [raw[j] for j in pick]
    assert select_keyframes(100, 32, "videorefer") == raw


def test_include_prompt_frame_replaces_nearest() -> None:
    base = select_keyframes(100, 8)
    with_first = select_keyframes(100, 8, include_frame=0)
    assert 0 in with_first and len(with_first) == 8
    assert set(base) - set(with_first) == {6}  # the nearest one was replaced
    assert select_keyframes(100, 8, include_frame=43) == base  # already selected: unchanged


def test_visible_prefers_frames_where_every_object_is_visible() -> None:
    vis = np.zeros((20, 2), dtype=bool)
    vis[5:10, 0] = True
    vis[7:15, 1] = True  # both visible on 7, 8, 9
    assert select_keyframes(20, 3, "visible", visible=vis) == [7, 8, 9]
    four = select_keyframes(20, 4, "visible", visible=vis)
    assert {7, 8, 9} <= set(four) and all(vis[f].any() for f in four)
    # More frames than visible ones: the rest is filled from the invisible frames.
    many = select_keyframes(20, 12, "visible", visible=vis)
    assert set(range(5, 15)) <= set(many) and len(many) == 12


def test_visible_one_object_1d() -> None:
    vis = np.zeros(30, dtype=bool)
    vis[10:20] = True
    frames = select_keyframes(30, 5, "visible", visible=vis)
    assert all(10 <= f < 20 for f in frames)
    assert len(frames) == 5


def test_fps_strategy() -> None:
    # 90 frames at 30 fps, 1 frame per second: the middles of the three seconds.
    assert select_keyframes(90, 8, "fps", fps=30.0, per_second=1.0) == [15, 45, 75]
    # 300 frames at 2 per second would be 20 frames: capped at K.
    assert len(select_keyframes(300, 8, "fps", fps=30.0, per_second=2.0)) == 8


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="unknown keyframe strategy") as exc:
        select_keyframes(10, 4, "random")
    assert exc.value.source == "keyframes"  # the library field, not the CLI flag
    with pytest.raises(InputError, match="positive integer") as exc:
        select_keyframes(10, 0)
    assert exc.value.source == "num_frames"
    with pytest.raises(InputError, match="outside the clip") as exc:
        select_keyframes(10, 4, include_frame=10)
    assert exc.value.source == "frame"
    with pytest.raises(InputError, match="visibility"):
        select_keyframes(10, 4, "visible")
    with pytest.raises(InputError, match="expected shape"):
        select_keyframes(10, 4, "visible", visible=np.ones((9, 1), dtype=bool))
    with pytest.raises(InputError, match="frame rate"):
        select_keyframes(10, 4, "fps", per_second=1.0)
