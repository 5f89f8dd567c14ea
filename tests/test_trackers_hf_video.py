"""The ``sam3`` / ``edgetam`` trackers (transformers' video models behind garvideo's streaming loop), on tiny
random checkpoints: pinned to transformers' own ``propagate_in_video_iterator`` bitwise, pruning changes
nothing, masks / points / boxes both ways, and missing or gated weights are one clean line."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from garvideo.errors import InputError, ModelUnavailableError
from garvideo.trackers.base import Prompt

N, H, W = 14, 48, 64  # longer than the tiny models' window (5 object pointers, 3 spatial memories)
PROMPT_FRAME = 6


class _Clip:
    """A small synthetic clip: a bright square moving right over a textured background."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        bg = (rng.random((H, W, 3)) * 80).astype(np.uint8)
        self.images = []
        for t in range(N):
            im = bg.copy()
            im[12:32, 8 + 2 * t : 28 + 2 * t] = (230, 200, 40)
            self.images.append(im)
        self.num_frames, self.height, self.width = N, H, W

    def frames(self, indices):
        for i in indices:
            yield i, self.images[i]


BOXES = [(8.0 + 2 * PROMPT_FRAME, 12.0, 28.0 + 2 * PROMPT_FRAME, 32.0), (2.0, 30.0, 40.0, 46.0)]


@pytest.fixture(scope="module", params=["sam3", "edgetam"])
def tracker(request):
    from garvideo.trackers import build_tracker

    folder = request.getfixturevalue(f"tiny_{request.param}_dir")
    return build_tracker(request.param, **{f"{request.param}_checkpoint": str(folder)}, device="cpu")


def _official(tracker, clip: _Clip, reverse: bool) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """transformers' own pipeline: the whole clip in one session, both boxes added in one call on the prompt
    frame, then ``propagate_in_video_iterator`` one way. ``{frame: (masks (N_obj, H, W) bool, presence)}``."""
    import torch

    model, proc = tracker.model, tracker.processor
    session = proc.init_video_session(video=clip.images, inference_device="cpu", dtype=torch.float32)
    proc.add_inputs_to_inference_session(
        session, frame_idx=PROMPT_FRAME, obj_ids=[1, 2], input_boxes=[[list(b) for b in BOXES]]
    )
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with torch.inference_mode():
        model(inference_session=session, frame_idx=PROMPT_FRAME)
        for o in model.propagate_in_video_iterator(session, start_frame_idx=PROMPT_FRAME, reverse=reverse):
            masks = proc.post_process_masks([o.pred_masks], original_sizes=[[H, W]], binarize=True)[0]
            scores = torch.sigmoid(o.object_score_logits.float().reshape(-1))
            out[o.frame_idx] = (masks[:, 0].numpy(), scores.numpy())
    return out


@pytest.mark.slow
def test_matches_transformers_propagate_bitwise_both_ways(tracker) -> None:
    clip = _Clip()
    prompts = [Prompt(obj_id=i + 1, frame=PROMPT_FRAME, box=b) for i, b in enumerate(BOXES)]
    ours = tracker.track(clip, prompts)
    fwd, bwd = _official(tracker, clip, reverse=False), _official(tracker, clip, reverse=True)
    assert sorted(fwd) == list(range(PROMPT_FRAME, N)) and sorted(bwd) == list(range(PROMPT_FRAME + 1))
    areas = []
    for f in range(N):
        masks, scores = (fwd if f >= PROMPT_FRAME else bwd)[f]
        for k, oid in enumerate((1, 2)):
            np.testing.assert_array_equal(ours.mask(f, oid), masks[k], err_msg=f"frame {f} object {oid}")
            assert ours.score(f, oid) == float(scores[k]), (f, oid)
            areas.append(int(masks[k].sum()))
    # The comparison is not between two empty results: the tiny model's masks vary.
    assert len(set(areas)) > 5 and max(areas) > 0
    # Memory stayed within the window: per object, the prompt frame plus the pointer window.
    window = max(tracker.model.config.num_maskmem, tracker.model.config.max_object_pointers_in_encoder)
    assert ours.info["memory_entries_max"] <= 2 * (1 + window)


@pytest.mark.slow
def test_pruned_equals_unpruned_forward_and_backward(tracker) -> None:
    clip = _Clip()
    mask = np.zeros((H, W), dtype=bool)
    mask[12:32, 8 + 2 * PROMPT_FRAME : 28 + 2 * PROMPT_FRAME] = True
    prompts = [Prompt(obj_id=1, frame=PROMPT_FRAME, mask=mask)]
    tracker.prune = False
    try:
        full = tracker.track(clip, prompts)
    finally:
        tracker.prune = True
    pruned = tracker.track(clip, prompts)
    for f in range(N):
        np.testing.assert_array_equal(pruned.mask(f, 1), full.mask(f, 1), err_msg=f"frame {f}")
        assert pruned.score(f, 1) == full.score(f, 1)
    assert len({full.area(f, 1) for f in range(N)}) > 3  # real, varying masks
    # Unpruned, a pass keeps one entry per frame; pruned, no more than the window.
    window = max(tracker.model.config.num_maskmem, tracker.model.config.max_object_pointers_in_encoder)
    assert full.info["memory_entries_max"] == N - PROMPT_FRAME
    assert pruned.info["memory_entries_max"] <= 1 + window < full.info["memory_entries_max"]


def test_points_on_last_frame_track_backward_with_two_objects(tracker) -> None:
    clip = _Clip()
    last = N - 1
    prompts = [
        Prompt(obj_id=1, frame=last, points=np.array([[18.0 + 2 * last, 22.0]]), labels=np.array([1])),
        Prompt(obj_id=2, frame=last, box=(2.0, 30.0, 40.0, 46.0)),
    ]
    result = tracker.track(clip, prompts, start=4)
    assert result.frames == list(range(4, N))
    assert result.frames_visited == N - 4  # one backward pass only
    assert all(result.tracked(f, o) for f in result.frames for o in (1, 2))
    assert any(result.area(f, 1) > 0 for f in result.frames)


def test_mask_and_points_on_one_frame(tracker) -> None:
    clip = _Clip()
    mask = np.zeros((H, W), dtype=bool)
    mask[12:32, 8:28] = True
    prompts = [
        Prompt(obj_id=1, frame=0, mask=mask),
        Prompt(obj_id=2, frame=0, points=np.array([[20.0, 40.0]]), labels=np.array([1])),
    ]
    if tracker.name == "edgetam":  # transformers' EdgeTAM forward fails on this mix: said in one line
        with pytest.raises(InputError, match="EdgeTAM cannot take a mask prompt"):
            tracker.track(clip, prompts, end=3)
        return
    result = tracker.track(clip, prompts, end=3)
    np.testing.assert_array_equal(result.mask(0, 1), mask)  # a mask prompt is its own output
    assert result.tracked(2, 1) and result.tracked(2, 2)


def test_missing_transformers_classes_is_a_clean_error(monkeypatch) -> None:
    """On a transformers without SAM 3 / EdgeTAM (4.56.2 has neither) the backend says so and how to fix it."""
    import transformers

    from garvideo.trackers.hf_video import require_classes

    if hasattr(transformers, "Sam3TrackerVideoModel"):
        monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(__version__="4.56.2"))
    for kind in ("sam3", "edgetam"):
        with pytest.raises(ModelUnavailableError, match=r"transformers 4\.56\.2 has none") as exc:
            require_classes(kind)
        assert "\n" not in str(exc.value)


def _fail_download(exc: Exception):
    def snapshot_download(repo_id, allow_patterns=None, local_files_only=False, **kw):
        from huggingface_hub.errors import LocalEntryNotFoundError

        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        raise exc

    return snapshot_download


def test_gated_checkpoint_is_one_line_saying_how_to_get_access(monkeypatch, run_cli) -> None:
    pytest.importorskip("transformers", minversion="5.0")
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    import garvideo.hub

    httpx = pytest.importorskip("httpx")
    url = "https://huggingface.co/facebook/sam3"
    gated = GatedRepoError("403 gated", response=httpx.Response(403, request=httpx.Request("GET", url)))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _fail_download(gated))
    monkeypatch.setattr(garvideo.hub, "hub_offline", lambda: False)
    monkeypatch.setattr(garvideo.hub, "hub_unreachable", lambda timeout=3.0: None)
    monkeypatch.delenv("GARVIDEO_SAM3_CHECKPOINT", raising=False)
    from garvideo.trackers import build_tracker

    with pytest.raises(ModelUnavailableError) as exc:
        build_tracker("sam3")
    msg = str(exc.value)
    assert "\n" not in msg and "gated" in msg
    assert "accept the SAM License on https://huggingface.co/facebook/sam3" in msg and "hf auth login" in msg


def test_missing_checkpoint_offline_through_the_cli(monkeypatch, run_cli, sample_clip) -> None:
    pytest.importorskip("transformers", minversion="5.0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GARVIDEO_EDGETAM_CHECKPOINT", raising=False)
    code, _, err = run_cli(
        "track", sample_clip.video_path, "--box", "10,10,60,60", "--tracker", "edgetam", "--json",
        "--edgetam-checkpoint", "someone/not-cached-edgetam",
    )  # fmt: skip
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert "not on disk and offline" in lines[0] and "make-tiny-model --kind edgetam" in lines[0]


def test_a_folder_that_is_not_a_checkpoint(tmp_path) -> None:
    pytest.importorskip("transformers", minversion="5.0")
    from garvideo.trackers import build_tracker

    with pytest.raises(InputError, match="not a SAM 3 checkpoint folder"):
        build_tracker("sam3", sam3_checkpoint=str(tmp_path))
