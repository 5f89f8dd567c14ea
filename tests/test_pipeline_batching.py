"""Batched generation (GarModel.generate_batch, GarVideo.run_batch) on the tiny random GAR in float32:
the same tokens as one request at a time."""

from __future__ import annotations

import pytest
import torch

from garvideo.errors import InputError
from garvideo.model.tiny import lively_bundle
from garvideo.pipeline import AnswerResult, DescribeResult, GarVideo, Question

NEW = 8  # new tokens per request (the tiny model rarely emits EOS: rows run to their limit)


@pytest.fixture(scope="module")
def bundle(tiny_model_dir):
    from garvideo.model import load_gar

    return lively_bundle(load_gar(tiny_model_dir, dtype="float32", device="cpu"))


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


def test_model_generate_batch_matches_generate(bundle) -> None:
    """Rows with different prefix lengths, a shared prefix, no prefix, different suffix lengths, per-row limits
    and a per-row EOS stop give the tokens of one-row generation."""
    model = bundle.model
    gen = torch.Generator().manual_seed(0)
    dim = model.hidden_size

    def embeds(length: int) -> torch.Tensor:
        return torch.randn(1, length, dim, generator=gen)  # (1, L, D)

    prefix_a = model.prefill(embeds(40))
    prefix_b = model.prefill(embeds(23))
    rows = [
        (prefix_a, embeds(5)),
        (prefix_b, embeds(9)),
        (prefix_a, embeds(2)),
        (None, embeds(7)),
        (prefix_b, embeds(1)),
    ]
    limits = [10, 6, 10, 8, 10]

    def alone(prefix, suffix, limit: int, eos: int | None = None) -> list[int]:
        kwargs = {"eos_token_id": eos} if eos is not None else {"eos_token_id": None}
        return model.generate(suffix, prefix=prefix, max_new_tokens=limit, **kwargs).reshape(-1).tolist()

    want = [alone(p, e, m) for (p, e), m in zip(rows, limits)]
    assert all(len(w) == m for w, m in zip(want, limits))  # random tiny model: no natural EOS here
    assert all(len(set(w)) > 3 for w in want)  # varied tokens
    got = model.generate_batch([e for _, e in rows], prefixes=[p for p, _ in rows], max_new_tokens=limits)
    assert got == want
    # EOS: a token that some row emits only after its first step; that row stops there (EOS kept).
    row, k = next((r, k) for r, w in enumerate(want) for k in range(1, len(w)) if w[k] not in w[:k])
    eos = want[row][k]
    want_eos = [alone(p, e, m, eos) for (p, e), m in zip(rows, limits)]
    assert want_eos[row] == want[row][: k + 1]
    got_eos = model.generate_batch(
        [e for _, e in rows], prefixes=[p for p, _ in rows], max_new_tokens=limits, eos_token_id=eos
    )
    assert got_eos == want_eos
    assert any(len(w) > k + 1 for w in want_eos)  # the other rows ran on
    # The prefixes' caches are not changed by batching: a second run gives the same tokens.
    assert model.generate_batch([rows[0][1]], prefixes=[prefix_a], max_new_tokens=10) == [want[0]]


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


@pytest.fixture(scope="module")
def one_by_one(gv, clips) -> list[DescribeResult | AnswerResult]:
    return [_one_by_one(gv, q) for q in _questions(*clips)]


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_run_batch_matches_one_by_one(gv, clips, one_by_one, batch_size) -> None:
    a, b = clips
    questions = _questions(a, b)
    want = one_by_one
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
    assert len({r.text for r in got}) == len(got)  # distinct texts: a mix-up of rows would show
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
    with pytest.raises(InputError, match="batch_size"):  # the library names its field
        gv.run_batch([Question(a)], batch_size=0)
    with pytest.raises(InputError, match="not a Question"):
        gv.run_batch([a])  # type: ignore[list-item]
    assert gv.run_batch([]) == []
