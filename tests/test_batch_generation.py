"""Batched generation (GarModel.generate_batch, GarVideo.run_batch) on the tiny random GAR in float32:
the same tokens as one request at a time."""

from __future__ import annotations

import pytest

from garvideo.errors import InputError
from garvideo.pipeline import AnswerResult, DescribeResult, GarVideo, Question

NEW = 8  # new tokens per request (the tiny model rarely emits EOS: rows run to their limit)


@pytest.fixture(scope="module")
def bundle(tiny_model_dir):
    from garvideo.model import load_gar

    return load_gar(tiny_model_dir, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def gv(bundle) -> GarVideo:
    return GarVideo(model=bundle, tracker="static", num_frames=3, max_new_tokens=NEW)


@pytest.fixture(scope="module")
def clips(gv, sample_clip):
    """Two clips with different prompt lengths: two objects on 3 keyframes, one object on 2 keyframes."""
    from garvideo.masks import load_mask

    masks = load_mask(sample_clip.prompt_mask)
    a = gv.prepare(sample_clip.video_path, masks=masks, frame=0)
    b = gv.prepare(sample_clip.video_path, masks=masks[1:], frame=0, num_frames=2)
    yield a, b
    a.close()
    b.close()


def _questions(a, b) -> list[Question]:
    """Describe, free-form and multiple choice on both clips, interleaved, with different lengths."""
    return [
        Question(a, "What is <object0> doing to <object1>?", ["chasing it", "ignoring it", "eating it"]),
        Question(b),
        Question(a, "What colour is <object1>?"),
        Question(b, "Where is <object0> going, and how fast does it move across the frame?"),
        Question(a),
        Question(b, "Is <object0> moving?", ["yes", "no"], max_new_tokens=3),
        Question(a, "Which object is bigger?", ["<object0>", "<object1>"]),
    ]


def _one_by_one(gv: GarVideo, q: Question) -> DescribeResult | AnswerResult:
    if q.question is None:
        return gv.describe(q.clip, max_new_tokens=q.max_new_tokens)
    return gv.ask(q.clip, q.question, q.options, max_new_tokens=q.max_new_tokens)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_run_batch_matches_one_by_one(gv, clips, batch_size) -> None:
    a, b = clips
    questions = _questions(a, b)
    want = [_one_by_one(gv, q) for q in questions]
    got = gv.run_batch(questions, batch_size=batch_size)
    assert len(got) == len(questions)
    for q, g, w in zip(questions, got, want):
        assert type(g) is type(w)
        assert (g.text, g.new_tokens, g.prompt_tokens) == (w.text, w.new_tokens, w.prompt_tokens), q
        assert g.frames == w.frames and g.objects == w.objects
        if isinstance(w, AnswerResult):
            assert (g.question, g.options, g.letter) == (w.question, w.options, w.letter)
        assert set(g.timings) == set(w.timings)
    assert got[5].new_tokens <= 3
    # Different prompt lengths really were batched together.
    assert len({r.prompt_tokens for r in got}) >= 4


def test_run_batch_checks_everything_first(gv, clips) -> None:
    a, b = clips
    with pytest.raises(InputError, match="at least 2 options"):
        gv.run_batch([Question(a), Question(b, "Which?", ["one"])])
    with pytest.raises(InputError, match="the question is empty"):
        gv.run_batch([Question(a, "  ")])
    with pytest.raises(InputError, match="<object1>"):
        gv.run_batch([Question(b, "Is <object1> there?")])
    with pytest.raises(InputError, match="batch-size"):
        gv.run_batch([Question(a)], batch_size=0)
    with pytest.raises(InputError, match="not a Question"):
        gv.run_batch([a])  # type: ignore[list-item]
    assert gv.run_batch([]) == []
