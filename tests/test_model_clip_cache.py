"""A PreparedClip's cached features and prefix caches belong to one model and one setting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from garvideo import GarVideo
from garvideo.model import load_gar, make_tiny_model


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache_clip")
    y, x = np.mgrid[0:96, 0:128]
    masks = {}
    for t in range(3):
        img = np.stack([(x * 2 + 40 * t) % 256, (y * 3) % 256, (x + y) % 256], axis=2).astype(np.uint8)
        m = (x - 30 - 20 * t) ** 2 + (y - 48) ** 2 < 15**2
        img[m] = (250, 250, 0)
        Image.fromarray(img).save(root / f"{t:05d}.png")
        masks[t] = m
    return root, masks


@pytest.mark.slow
def test_reusing_a_clip_with_another_model_recomputes(tiny_model_dir, tmp_path, clip_dir) -> None:
    root, masks = clip_dir
    first = GarVideo(
        model=load_gar(tiny_model_dir, device="cpu"), tracker="flow", num_frames=2, max_new_tokens=2
    )
    other_dir = make_tiny_model(tmp_path / "other", seed=1)
    second = GarVideo(model=load_gar(other_dir, device="cpu"), tracker="flow", num_frames=2, max_new_tokens=2)
    clip = first.prepare(root, frame_masks=[masks], num_frames=2)
    first.describe(clip)
    tokens_first = clip.features.tokens.clone()
    key_first = clip.cache_key
    assert len(clip.prefix_caches) == 1
    first.encode(clip)  # same model, same settings: nothing recomputed
    assert clip.features.tokens.data_ptr() is not None and torch.equal(clip.features.tokens, tokens_first)

    second.describe(clip)  # same token ids, another model: features and prefix recomputed
    assert clip.cache_key != key_first
    assert not torch.equal(clip.features.tokens, tokens_first)
    assert all(k[0] == clip.cache_key for k in clip.prefix_caches) and len(clip.prefix_caches) == 1
    alone = second.prepare(root, frame_masks=[masks], num_frames=2)
    second.encode(alone)
    assert torch.equal(clip.features.tokens, alone.features.tokens)
    clip.close()
    alone.close()


def test_same_model_other_roi_mode_recomputes(tiny_model_dir, clip_dir) -> None:
    root, masks = clip_dir
    bundle = load_gar(tiny_model_dir, device="cpu")
    official = GarVideo(model=bundle, tracker="flow", num_frames=2, roi_mode="official")
    corrected = GarVideo(model=bundle, tracker="flow", num_frames=2, roi_mode="corrected")
    clip = official.prepare(root, frame_masks=[masks], num_frames=2)
    official.encode(clip)
    key = clip.cache_key
    corrected.encode(clip)
    assert clip.cache_key != key and clip.cache_key[-1] == "corrected" and clip.roi_mode == "corrected"
    clip.close()
