"""The pipeline's stages called on their own inputs (settings, budget, bundle, tracker; never a GarVideo), on
the tiny random GAR and the static tracker: each gives what the facade gives."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from garvideo.errors import InputError
from garvideo.model.prompts import build_video_prompt
from garvideo.pipeline import GarVideo, PipelineSettings, Question, TokenBudget, frame_cost
from garvideo.pipeline.batching import answer_batch
from garvideo.pipeline.budget import _TEXT_OVERHEAD_GUESS, DEFAULT_CONTEXT_LENGTH, QUESTION_RESERVE
from garvideo.pipeline.clip import prepare_clip
from garvideo.pipeline.encoding import encode_clip
from garvideo.pipeline.generation import run_request
from garvideo.pipeline.prompt import build_prompt_inputs, check_question
from garvideo.trackers import StaticTracker

NEW = 4  # new tokens per request (the tiny model's text is meaningless: the plumbing is compared)
PIPELINE = Path(__file__).resolve().parents[1] / "garvideo" / "pipeline"


@pytest.fixture(scope="module")
def bundle(tiny_model_dir):
    from garvideo.model import load_gar

    return load_gar(tiny_model_dir, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def masks(sample_clip) -> list[np.ndarray]:
    from garvideo.masks import load_mask

    return load_mask(sample_clip.prompt_mask)  # two objects on frame 0


@pytest.fixture(scope="module")
def settings() -> PipelineSettings:
    return PipelineSettings(num_frames=3, max_new_tokens=NEW)


@pytest.fixture(scope="module")
def clip(bundle, sample_clip, masks, settings):
    """The sample clip prepared and encoded by the stage itself."""
    c = prepare_clip(
        sample_clip.video_path,
        masks,
        0,
        settings=settings,
        budget=TokenBudget.for_bundle(bundle),
        tracker=StaticTracker(),
        encoder=bundle,
    )
    yield c
    c.close()


def test_token_budget_defaults_and_loaded(bundle) -> None:
    default = TokenBudget()
    assert default.context_length == DEFAULT_CONTEXT_LENGTH and default.text_overhead(2) == _TEXT_OVERHEAD_GUESS
    # K · 1536 + 128 + 256 + 4 <= 11520 -> K = 7 for five objects.
    assert default.max_keyframes(5, NEW) == (11520 - 128 - QUESTION_RESERVE - NEW) // frame_cost(5) == 7
    assert TokenBudget(context_length=1000).max_keyframes(5, NEW) == 0
    loaded = TokenBudget.for_bundle(bundle)
    assert loaded.context_length == DEFAULT_CONTEXT_LENGTH  # the tiny config's max_position_embeddings
    text = build_video_prompt(1, [[True]] * 2, "")
    assert loaded.text_overhead(2) == int(bundle.tokenize(text).shape[1]) - frame_cost(2)
    gv = GarVideo(model=bundle, tracker="static", num_frames=3, max_new_tokens=NEW)
    assert loaded.max_keyframes(3, NEW) == gv.max_keyframes(3) and gv.context_length() == loaded.context_length
    assert TokenBudget.for_bundle(None) == TokenBudget()
    loaded.check_request(DEFAULT_CONTEXT_LENGTH - NEW, NEW, "question")  # fits exactly
    with pytest.raises(InputError, match="exceeds the model's 11520-position context") as err:
        loaded.check_request(DEFAULT_CONTEXT_LENGTH - NEW + 1, NEW, "question")
    assert err.value.source == "question" and "--" not in err.value.problem


def test_prepare_clip_tracks_picks_keyframes_and_encodes(clip, masks) -> None:
    assert clip.frames == [8, 24, 39]  # uniform segment midpoints of 48 frames, K = 3
    assert clip.tracker == "static" and clip.notes[0] == "tracker: static"
    assert clip.masks.shape == (3, 2, 240, 320)  # (K, O, H, W)
    for t in range(3):  # the static tracker copies the prompt masks to every frame
        assert np.array_equal(clip.masks[t, 0], masks[0]) and np.array_equal(clip.masks[t, 1], masks[1])
    assert [o.prompt_token for o in clip.objects] == ["<Prompt0>", "<Prompt1>"]  # several objects
    assert clip.encoded and tuple(clip.features.tokens.shape[:2]) == (3, 256)
    assert clip.regions is not None and clip.regions.shape[0] == 6  # 2 objects on 3 keyframes
    assert clip.timings["prepare"] >= clip.timings["vision"] > 0


def test_prepare_clip_settings_tracker_and_budget(sample_clip, masks, settings) -> None:
    video = sample_clip.video_path
    built: list[int] = []

    def lazy_tracker() -> StaticTracker:
        built.append(1)
        return StaticTracker()

    include = settings.with_overrides(include_prompt_frame=True, num_frames=2)
    c = prepare_clip(video, masks, 0, settings=include, budget=TokenBudget(), tracker=lazy_tracker)
    assert 0 in c.frames and len(c.frames) == 2 and not c.encoded and built == [1]
    given = [{f: masks[0] for f in (0, 10, 20, 30)}]
    c2 = prepare_clip(video, frame_masks=given, settings=settings, budget=TokenBudget(), tracker=lazy_tracker)
    assert c2.tracker == "given" and c2.frames == [10, 20, 30] and built == [1]  # no tracking: not built
    # A small context reduces K and says so; a tiny one leaves no keyframe (named by its field).
    small = TokenBudget(context_length=2 * frame_cost(2) + 128 + QUESTION_RESERVE + NEW)
    c3 = prepare_clip(video, masks, 0, settings=settings, budget=small, tracker=StaticTracker())
    assert len(c3.frames) == 2 and any("reduced the keyframes from 3 to 2" in n for n in c3.notes)
    for prepared in (c, c2, c3):
        prepared.close()
    with pytest.raises(InputError) as err:
        prepare_clip(video, masks, 0, settings=settings, budget=TokenBudget(context_length=500))
    assert err.value.source == "max_new_tokens"
    with pytest.raises(InputError) as err:
        prepare_clip(video, masks, 0, settings=settings, budget=TokenBudget())  # no tracker
    assert err.value.source == "tracker"
    with pytest.raises(InputError) as err:
        prepare_clip(video, masks, 99, settings=settings, budget=TokenBudget(), tracker=StaticTracker())
    assert err.value.source == "frame"


def test_encode_clip_reuses_and_recomputes(bundle, clip) -> None:
    feats = clip.features
    assert encode_clip(bundle, clip, "official") is clip and clip.features is feats  # same model and mode
    encode_clip(bundle, clip, "corrected")
    assert clip.features is not feats and clip.roi_mode == "corrected"
    encode_clip(bundle, clip, "official")
    assert clip.roi_mode == "official"


def test_prompt_stage_equals_facade(bundle, clip) -> None:
    gv = GarVideo(model=bundle, tracker="static", num_frames=3, max_new_tokens=NEW)
    for question, options in ((None, None), ("What is <object0> doing to <object1>?", ["a", "b"])):
        inputs = build_prompt_inputs(bundle, clip, question, options)
        want = gv.prompt_inputs(clip, question, options)
        assert inputs.input_ids.tolist() == want.input_ids.tolist()
        assert (inputs.prefix_length, inputs.region_order) == (want.prefix_length, want.region_order)
    with pytest.raises(InputError) as err:
        build_prompt_inputs(bundle, clip, "Is <object2> there?")
    assert err.value.source == "question"
    with pytest.raises(InputError) as err:
        check_question("Which?", ["only"])
    assert err.value.source == "options"
    with pytest.raises(InputError) as err:
        check_question(None, ["a", "b"])
    assert err.value.source == "options"


def test_run_request_equals_describe(bundle, clip) -> None:
    gv = GarVideo(model=bundle, tracker="static", num_frames=3, max_new_tokens=NEW)
    inputs = build_prompt_inputs(bundle, clip, None)
    gen, timings = run_request(bundle, clip, inputs, max_new_tokens=NEW)
    assert set(timings) == {"prefill", "generation"}
    again, timings2 = run_request(bundle, clip, inputs, max_new_tokens=NEW)
    assert timings2["prefill"] == 0.0 and again.token_ids == gen.token_ids  # the prefix cache is reused
    result = gv.describe(clip)
    assert (result.text, result.new_tokens, result.prompt_tokens) == (gen.text, gen.num_tokens, inputs.length)
    assert result.model == str(bundle.name) and result.dtype == "float32"


def test_answer_batch_equals_run_batch(bundle, clip, settings) -> None:
    gv = GarVideo(model=bundle, tracker="static", settings=settings)
    questions = [Question(clip), Question(clip, "Which is <object1>?", ["left", "right"]), Question(clip, "Why?")]
    budget = TokenBudget.for_bundle(bundle)
    got = answer_batch(bundle, questions, settings=settings, budget=budget, batch_size=2)
    want = gv.run_batch(questions, batch_size=2)
    assert [(r.text, r.new_tokens, r.prompt_tokens) for r in got] == [
        (r.text, r.new_tokens, r.prompt_tokens) for r in want
    ]
    assert [type(r).__name__ for r in got] == ["DescribeResult", "AnswerResult", "AnswerResult"]
    with pytest.raises(InputError) as err:
        answer_batch(bundle, questions, settings=settings, budget=budget, batch_size=0)
    assert err.value.source == "batch_size"
    with pytest.raises(InputError) as err:
        answer_batch(bundle, [Question(clip, max_new_tokens=0)], settings=settings, budget=budget)
    assert err.value.source == "max_new_tokens"
    with pytest.raises(InputError) as err:
        answer_batch(bundle, [Question(clip, max_new_tokens=20000)], settings=settings, budget=budget)
    assert err.value.source == "max_new_tokens" and "exceeds" in err.value.problem  # a describe request


def test_facade_overrides_are_validated_by_settings(bundle, sample_clip, masks) -> None:
    gv = GarVideo(model=bundle, tracker="static", num_frames=3, max_new_tokens=NEW)
    with pytest.raises(InputError) as err:
        gv.prepare(sample_clip.video_path, masks, num_frames=0, encode=False)
    assert err.value.source == "num_frames"
    with pytest.raises(InputError) as err:
        gv.prepare(sample_clip.video_path, masks, keyframes="best", encode=False)
    assert err.value.source == "keyframes"
    assert (gv.num_frames, gv.max_new_tokens, gv.roi_mode) == (3, NEW, "official")  # read from the settings


def _imports(path: Path) -> set[str]:
    """Every module a file imports, function-local and TYPE_CHECKING imports included."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_stage_imports_the_facade() -> None:
    stages = [p for p in PIPELINE.glob("*.py") if p.stem not in ("__init__", "facade")]
    assert {p.stem for p in stages} >= {"clip", "encoding", "prompt", "generation", "batching", "budget"}
    for path in stages:
        imported = _imports(path)
        assert "garvideo.pipeline.facade" not in imported and "garvideo.pipeline" not in imported, path.name
