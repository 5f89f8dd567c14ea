"""Building or running a tracker leaves the process-wide thread counts as they were (issue 20)."""

import cv2
import numpy as np
import pytest
import torch

from garvideo.trackers import Prompt, build_tracker
from garvideo.trackers.threads import scoped_threads


class _Clip:
    num_frames, height, width = 4, 24, 32

    def frames(self, indices):
        for i in indices:
            im = np.zeros((self.height, self.width, 3), np.uint8)
            im[5 + i : 15 + i, 8:20] = 200
            yield i, im


def test_scoped_threads_sets_and_restores():
    before_t, before_cv = torch.get_num_threads(), cv2.getNumThreads()
    with scoped_threads(1, "torch"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before_t
    with pytest.raises(RuntimeError), scoped_threads(1, "opencv"):
        assert cv2.getNumThreads() == 1
        raise RuntimeError("restored on error too")
    assert cv2.getNumThreads() == before_cv
    with scoped_threads(None, "torch"):
        assert torch.get_num_threads() == before_t


def test_flow_tracker_threads_scoped_to_track():
    before = cv2.getNumThreads()
    seen = []
    want = 1 if before != 1 else 2  # differs from the current setting, so the check is not vacuous
    tracker = build_tracker("flow", threads=want)
    assert cv2.getNumThreads() == before  # building changes nothing
    clip = _Clip()
    mask = np.zeros((24, 32), bool)
    mask[5:15, 8:20] = True
    result = tracker.track(
        clip, [Prompt(1, 0, mask=mask)], progress=lambda d, t: seen.append(cv2.getNumThreads())
    )
    assert seen and set(seen) == {want}  # the work ran with the option
    assert cv2.getNumThreads() == before  # and the setting is restored after it
    assert result.frames == [0, 1, 2, 3]
