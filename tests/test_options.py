"""garvideo.options: the one options object and the one factory every front end builds the pipeline with."""

from __future__ import annotations

import subprocess
import sys

import pytest

from garvideo.errors import InputError
from garvideo.options import GarVideoOptions, build_garvideo
from garvideo.pipeline.settings import PipelineSettings


def test_options_hold_settings_and_tracker_options_and_build_without_loading() -> None:
    settings = PipelineSettings(num_frames=3, keyframes="fps", per_second=2.0, max_new_tokens=7)
    options = GarVideoOptions(
        model="some/model",
        tracker="flow",
        sam2_checkpoint="/ckpt/sam2.pt",
        flow_options={"work_size": 320},
        device="cpu",
        dtype="float32",
        settings=settings,
    )
    assert options.tracker_options() == {"work_size": 320, "sam2_checkpoint": "/ckpt/sam2.pt"}
    gv = build_garvideo(options, env={})
    assert gv.settings == settings
    assert (gv.num_frames, gv.keyframes, gv.per_second, gv.max_new_tokens) == (3, "fps", 2.0, 7)
    assert gv.model_name == "some/model" and not gv.model_loaded  # nothing loaded until load()
    assert gv.tracker_name == "flow"
    with pytest.raises(AttributeError):
        options.tracker = "sam2"  # type: ignore[misc]  # frozen


def test_settings_are_checked_once_and_name_their_field() -> None:
    for field, value in (("num_frames", 0), ("keyframes", "best"), ("roi_mode", "x"), ("max_new_tokens", 0),
                         ("per_second", 0.0), ("num_frames", True)):
        with pytest.raises(InputError) as err:
            PipelineSettings(**{field: value})
        assert err.value.source == field
    base = PipelineSettings(num_frames=4)
    assert base.with_overrides(num_frames=None, keyframes=None) is base
    assert base.with_overrides(num_frames=2).num_frames == 2
    with pytest.raises(InputError):
        base.with_overrides(num_frames=-1)


def test_torchrun_ranks_take_their_own_gpu(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert build_garvideo(GarVideoOptions(), env={"LOCAL_RANK": "3"}).device == "cuda:3"
    # an explicit device wins; without LOCAL_RANK the default device rule applies (None: decided on load)
    assert build_garvideo(GarVideoOptions(device="cpu"), env={"LOCAL_RANK": "3"}).device == "cpu"
    assert build_garvideo(GarVideoOptions(), env={}).device is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert build_garvideo(GarVideoOptions(), env={"LOCAL_RANK": "3"}).device is None


def test_options_and_settings_import_no_torch() -> None:
    code = "import sys, garvideo.options, garvideo.pipeline.settings; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
