"""The Python API's furniture: ``GarVideo.from_pretrained``, readable ``repr``s, ``to_dict()``."""

from __future__ import annotations

import dataclasses
import json

import pytest

from garvideo import AnswerResult, DescribeResult, GarVideo
from garvideo.errors import InputError, ModelUnavailableError


@pytest.fixture(scope="module")
def gv(tiny_model_dir):
    return GarVideo.from_pretrained(
        tiny_model_dir, tracker="flow", num_frames=3, max_new_tokens=4, device="cpu", dtype="float32"
    )


@pytest.fixture(scope="module")
def clip(gv, sample_clip):
    from garvideo.masks import load_mask

    return gv.prepare(sample_clip.video_path, masks=load_mask(sample_clip.prompt_mask), frame=0)


def test_from_pretrained_loads_the_model_and_builds_the_tracker(gv, tiny_model_dir):
    assert isinstance(gv, GarVideo)
    assert gv.model_loaded
    assert gv.tracker_reason is not None  # the tracker was built (``auto`` would be resolved here)
    assert gv.tracker_name == "flow"
    assert gv.model_name == str(tiny_model_dir)
    assert (gv.num_frames, gv.max_new_tokens, gv.model_dtype) == (3, 4, "float32")


def test_from_pretrained_checks_options_and_weights(tmp_path):
    with pytest.raises(InputError, match="^keyframes: unknown keyframe strategy 'bogus'"):
        GarVideo.from_pretrained(tmp_path, keyframes="bogus")
    with pytest.raises((InputError, ModelUnavailableError)):
        GarVideo.from_pretrained(tmp_path / "no-such-model", tracker="flow")  # loads now, not later


def test_repr_shows_model_tracker_and_k_without_loading(gv, tiny_model_dir):
    lazy = GarVideo(tiny_model_dir, tracker="flow", num_frames=6)
    text = repr(lazy)
    assert str(tiny_model_dir) in text and "(not loaded)" in text
    assert "tracker='flow (not built)'" in text and "num_frames=6" in text
    assert not lazy.model_loaded  # repr loaded nothing
    loaded = repr(gv)
    assert loaded.startswith("GarVideo(") and "(not loaded)" not in loaded
    assert "tracker='flow'" in loaded and "num_frames=3" in loaded and "dtype='float32'" in loaded


def test_results_repr_to_dict_and_to_json(gv, clip):
    described = gv.describe(clip)
    answer = gv.ask(clip, "What is <object0> doing to <object1>?", options=["chasing it", "ignoring it"])
    for result, cls in ((described, DescribeResult), (answer, AnswerResult)):
        assert type(result) is cls
        text = repr(result)
        assert text.startswith(f"{cls.__name__}(") and "\n" not in text and len(text) < 400
        assert f"frames={[int(f) for f in result.frames]}" in text and "objects=2" in text
        d = result.to_dict()
        assert set(d) == {f.name for f in dataclasses.fields(cls)}
        assert d["timings"] == result.timings  # not rounded
        assert d["objects"] == result.objects and d["objects"] is not result.objects  # a copy
        json.dumps(d)  # plain values
        j = result.to_json()
        assert set(j) == set(d)
        assert {k: v for k, v in j.items() if k != "timings"} == {
            k: v for k, v in d.items() if k != "timings"
        }
    assert "question='What is <object0> doing to <object1>?'" in repr(answer)
    assert f"letter={answer.letter!r}" in repr(answer)
    if answer.letter is None:  # the tiny model's text rarely names an option: the repr says why
        assert "(the answer names no option)" in repr(answer)
