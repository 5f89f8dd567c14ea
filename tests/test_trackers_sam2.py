"""The sam2 backend end to end on a tiny, randomly initialised SAM 2.1 built from the packaged config.

No checkpoint can be downloaded here: the model is composed from sam2's own
``configs/sam2.1/sam2.1_hiera_t.yaml`` with the real architecture (Hiera trunk, FPN neck, memory
attention and encoder, SAM heads), shrunk by hydra overrides (``TINY_OVERRIDES``), with random
weights. The tests check the streaming loop's behaviour, not segmentation quality.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sam2")
import torch

from garvideo.errors import InputError
from garvideo.eval.vos import jaccard
from garvideo.trackers import Prompt, build_tracker
from garvideo.trackers.sam2_backend import TINY_OVERRIDES, Sam2Tracker, build_sam2_model


class ToyVideo:
    """A bright square sliding right over a dark background (frames made on demand)."""

    def __init__(self, n: int = 24, h: int = 72, w: int = 96) -> None:
        self.num_frames, self.height, self.width, self.fps = n, h, w, 10.0
        self.decoded = 0

    def box(self, i: int) -> tuple[int, int, int, int]:
        x0 = 5 + (i * 2) % (self.width - 30)
        return x0, 20, x0 + 24, 44

    def mask(self, i: int) -> np.ndarray:
        m = np.zeros((self.height, self.width), bool)
        x0, y0, x1, y1 = self.box(i)
        m[y0:y1, x0:x1] = True
        return m

    def frames(self, indices):
        for i in indices:
            self.decoded += 1
            im = np.full((self.height, self.width, 3), 30, np.uint8)
            im[self.mask(i)] = (220, 180, 40)
            yield i, im


@pytest.fixture(scope="module")
def tiny_sam2():
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # restored below: the rest of the suite keeps its setting
    model = build_sam2_model(
        "configs/sam2.1/sam2.1_hiera_t.yaml", image_size=128, extra_overrides=TINY_OVERRIDES
    )
    yield Sam2Tracker(model=model, device="cpu")
    torch.set_num_threads(threads)


def test_forward_from_first_frame(tiny_sam2):
    v = ToyVideo()
    r = tiny_sam2.track(v, [Prompt(1, 0, mask=v.mask(0))])
    assert r.tracker == "sam2"
    assert r.frames == list(range(v.num_frames))
    assert r.frames_visited == v.num_frames
    # A mask prompt is the output on its frame (as is, not through the model's S/4 mask resolution).
    assert np.array_equal(v.mask(0), r.mask(0, 1))
    assert r.present(0, 1) and r.score(0, 1) > 0.99
    for f in r.frames:
        m = r.mask(f, 1)
        assert m.shape == (v.height, v.width) and m.dtype == bool
        assert 0.0 <= r.score(f, 1) <= 1.0
        assert r.present(f, 1) == (r.score(f, 1) > 0.5 and m.any())
    assert r.info["image_size"] == 128 and r.info["device"] == "cpu"


def test_backward_from_last_frame(tiny_sam2):
    # Backward propagation is where the official predictor fails on CPU (bf16 memory features).
    v = ToyVideo(n=12)
    r = tiny_sam2.track(v, [Prompt(1, 11, mask=v.mask(11))])
    assert r.frames == list(range(12))
    assert r.frames_visited == 12
    assert jaccard(v.mask(11), r.mask(11, 1)) > 0.8


def test_two_objects_one_prompted_on_a_middle_frame(tiny_sam2):
    v = ToyVideo(n=16)
    other = np.zeros((v.height, v.width), bool)
    other[50:66, 60:90] = True
    r = tiny_sam2.track(v, [Prompt(1, 0, mask=v.mask(0)), Prompt(2, 8, mask=other)])
    assert r.object_ids == [1, 2]
    assert r.frames == list(range(16))
    assert jaccard(other, r.mask(8, 2)) > 0.8
    assert jaccard(v.mask(0), r.mask(0, 1)) > 0.8
    # Object 2 reaches frames before its prompt through the backward pass.
    assert all(r.tracked(f, 2) for f in r.frames)
    assert all(r.tracked(f, 1) for f in r.frames)
    assert r.frames_visited == 16 + 9  # forward 0..15, backward 8..0


def test_point_and_box_prompts(tiny_sam2):
    v = ToyVideo(n=6)
    x0, y0, x1, y1 = v.box(2)
    r = tiny_sam2.track(
        v,
        [
            Prompt(1, 2, points=np.array([[x0 + 5.0, y0 + 5.0], [2.0, 2.0]]), labels=np.array([1, 0])),
            Prompt(2, 2, box=(float(x0), float(y0), float(x1), float(y1))),
        ],
    )
    assert r.frames == list(range(6))
    assert r.object_ids == [1, 2]


def test_memory_bank_is_pruned_on_long_clips(tiny_sam2):
    v = ToyVideo(n=60, h=40, w=60)
    m = tiny_sam2.model
    r = tiny_sam2.track(v, [Prompt(1, 0, mask=v.mask(0))], frames=[0, 30, 59])
    assert r.frames == [0, 30, 59]  # only the requested frames are kept ...
    assert v.decoded == 60  # ... but every frame was propagated through, once
    window = max(m.num_maskmem + 1, m.max_obj_ptrs_in_encoder)
    assert r.info["memory_entries_max"] <= window + 1  # non-conditioning window + the prompt frame
    assert r.info["memory_entries_max"] < 30


def test_checkpoint_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("GARVIDEO_SAM2_CHECKPOINT", raising=False)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="unreadable sam2 checkpoint"):
        build_tracker("sam2", sam2_checkpoint=str(bad), image_size=128)
    with pytest.raises(InputError, match="not found"):
        build_tracker("sam2", sam2_checkpoint=str(tmp_path / "missing.pt"))
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"foo": torch.zeros(1)}}, wrong)
    with pytest.raises(InputError, match="does not match"):
        build_tracker("sam2", sam2_checkpoint=str(wrong), sam2_config="sam2.1_hiera_t", image_size=128)
    with pytest.raises(InputError, match="unknown config"):
        build_tracker("sam2", sam2_checkpoint=str(wrong), sam2_config="hiera_xxl")
    with pytest.raises(InputError, match="multiple of 32"):
        build_tracker("sam2", sam2_checkpoint=str(wrong), image_size=100)


def test_real_checkpoint_round_trip(tiny_sam2, tmp_path):
    # A checkpoint in the official layout ({"model": state_dict}) loads back into the same config.
    ckpt = tmp_path / "tiny.pt"
    torch.save({"model": tiny_sam2.model.state_dict()}, ckpt)
    from garvideo.trackers.sam2_backend import load_sam2_checkpoint

    torch.manual_seed(1)
    other = build_sam2_model(
        "configs/sam2.1/sam2.1_hiera_t.yaml", image_size=128, extra_overrides=TINY_OVERRIDES
    )
    load_sam2_checkpoint(other, str(ckpt))
    for (k, a), (_, b) in zip(tiny_sam2.model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_hub_id_offline_says_how_to_get_weights(monkeypatch):
    from garvideo.errors import ModelUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="--sam2-checkpoint"):
        build_tracker("sam2", sam2_checkpoint="facebook/sam2.1-hiera-tiny")
    monkeypatch.delenv("GARVIDEO_SAM2_CHECKPOINT", raising=False)
    with pytest.raises(ModelUnavailableError, match="flow needs no weights"):
        build_tracker("sam2")


def test_keyframes_only_mode_runs_the_model_on_kept_frames(tiny_sam2):
    v = ToyVideo(n=30)
    fast = Sam2Tracker(model=tiny_sam2.model, device="cpu", every_frame=False)
    r = fast.track(v, [Prompt(1, 15, mask=v.mask(15))], frames=[0, 10, 20, 29])
    assert r.frames == [0, 10, 20, 29]
    assert v.decoded == 6  # forward 15 (prompt), 20, 29; backward 15, 10, 0
    assert r.frames_visited == 6
    assert all(r.tracked(f, 1) for f in r.frames)
