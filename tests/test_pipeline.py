"""The video pipeline (garvideo.pipeline) on the tiny random GAR, the flow tracker and synthetic clips."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from garvideo.errors import InputError
from garvideo.model import replay_regions
from garvideo.model.prompts import IMAGE_TOKEN_ID, REGION_TOKEN_IDS, REGION_TOKENS, TOKENS_PER_TILE
from garvideo.pipeline import (
    DEFAULT_CONTEXT_LENGTH,
    GarVideo,
    PreparedClip,
    frame_cost,
    rewrite_object_refs,
)

NEW = 4  # new tokens per request: the tiny model's text is meaningless, only the plumbing is tested


@pytest.fixture(scope="module")
def bundle(tiny_model_dir):
    from garvideo.model import load_gar

    return load_gar(tiny_model_dir, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def gv(bundle) -> GarVideo:
    return GarVideo(model=bundle, tracker="flow", num_frames=3, max_new_tokens=NEW)


@pytest.fixture(scope="module")
def colour_clip(tmp_path_factory):
    """Four frames of distinct constant colours with a square moving right (object 0) and a bar that
    is absent on frame 2 (object 1): distinguishable per-frame features and per-frame boxes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("colour_clip")
    h, w = 112, 160
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    obj0, obj1 = {}, {}
    for t, c in enumerate(colours):
        img = np.zeros((h, w, 3), dtype=np.uint8)
        img[:] = c
        m0 = np.zeros((h, w), dtype=bool)
        m0[20 + 5 * t : 60 + 5 * t, 10 + 25 * t : 50 + 25 * t] = True
        img[m0] = (255, 255, 255)
        m1 = np.zeros((h, w), dtype=bool)
        if t != 2:
            m1[80:100, 20 + 10 * t : 140] = True
            img[m1] = (0, 0, 0)
        Image.fromarray(img).save(root / f"{t:05d}.png")
        obj0[t] = m0
        obj1[t] = m1 if m1.any() else None
    return root, obj0, obj1


def _runs(ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, placeholder id) of every 256-token region run, in order."""
    from garvideo.model import region_run_starts

    flat = ids.reshape(-1)
    return [(s, int(flat[s])) for s in region_run_starts(flat)]


# ----------------------------------------------------------------------------------------------------
# prompt assembly
# ----------------------------------------------------------------------------------------------------
def test_prompt_token_counts_and_time_order(gv, colour_clip) -> None:
    root, obj0, obj1 = colour_clip
    clip = gv.prepare(root, frame_masks=[obj0, obj1], num_frames=4, encode=False)
    assert clip.frames == [0, 1, 2, 3]
    assert clip.tracker == "given"
    assert clip.present == [[True, True, True, True], [True, True, False, True]]
    inp = gv.prompt_inputs(clip, "What is <object0> doing to <object1>?")
    ids = inp.input_ids[0]
    assert int((ids == IMAGE_TOKEN_ID).sum()) == TOKENS_PER_TILE * 4  # 256 global tokens per frame
    n_regions = 4 + 3  # object 1 is absent on frame 2: no region tokens for it there
    assert int(torch.isin(ids, torch.tensor(REGION_TOKEN_IDS)).sum()) == REGION_TOKENS * n_regions
    # Region runs: object 0 on frames 0..3, then object 1 on frames 0, 1, 3 (time order within an object).
    assert inp.region_order == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 3)]
    runs = _runs(ids)
    assert [tok for _, tok in runs] == [REGION_TOKEN_IDS[0]] * 4 + [REGION_TOKEN_IDS[1]] * 3
    assert all(b > a for (a, _), (b, _) in itertools.pairwise(runs))
    # Global tokens come before every region token; the prefix ends after the last region token.
    image_pos = (ids == IMAGE_TOKEN_ID).nonzero().reshape(-1)
    assert int(image_pos.max()) < runs[0][0]
    assert inp.prefix_length == runs[-1][0] + REGION_TOKENS
    assert "<Prompt0>" in inp.text and "<Prompt1>" in inp.text and "<object0>" not in inp.text
    assert any("object1 is absent on keyframe(s) 2" in n for n in clip.notes)
    clip.close()


def test_single_object_question_uses_prompt0_and_question_refs(gv, colour_clip) -> None:
    root, obj0, _ = colour_clip
    clip = gv.prepare(root, frame_masks=[obj0], num_frames=2, encode=False)
    inp = gv.prompt_inputs(clip, "Where is <object0> going?")  # GAR-Bench convention: <Prompt0>, 128004
    assert "<Prompt0>" in inp.text and "<Prompt1>" not in inp.text
    assert [tok for _, tok in _runs(inp.input_ids)] == [REGION_TOKEN_IDS[0]] * 2
    described = gv.prompt_inputs(clip, None)  # caption convention: <Prompt1>, 128005
    assert "<Prompt1>" in described.text and "<Prompt0>" not in described.text
    with pytest.raises(InputError, match="<object1>"):
        gv.prompt_inputs(clip, "Is <object1> there?")
    clip.close()
    assert rewrite_object_refs("<object0> and <object1>", 2) == "<Prompt0> and <Prompt1>"


def test_object_absent_on_every_keyframe_is_left_out(gv, colour_clip) -> None:
    root, obj0, obj1 = colour_clip
    only2 = {2: obj0[2]}  # object annotated on frame 2 only; keyframes 0, 1, 3 have no mask for it
    clip = gv.prepare(root, frame_masks=[obj1, only2], num_frames=4, encode=False)
    assert clip.frames == [0, 1, 2, 3]
    assert clip.present == [[True, True, False, True], [False, False, True, False]]
    inp = gv.prompt_inputs(clip)
    assert len(_runs(inp.input_ids)) == 4
    clip.close()


def test_budget_reduces_k_and_says_so(gv, colour_clip) -> None:
    root, obj0, _ = colour_clip
    five = [{t: obj0[t] for t in range(4)} for _ in range(5)]
    context = gv.context_length()
    assert context == DEFAULT_CONTEXT_LENGTH  # read from the tiny model's config (same as GAR-1B)
    k_max = gv.max_keyframes(5)
    assert frame_cost(5) == 256 * 6
    assert k_max * frame_cost(5) < context < (k_max + 1) * frame_cost(5) + 1024
    big = GarVideo(model=gv.bundle, tracker="flow", num_frames=8, max_new_tokens=NEW)
    k8 = big.max_keyframes(5)
    assert k8 == 7  # 7 · 1536 = 10752 fits 11520 with text and reserve; 8 · 1536 = 12288 does not
    # A clip of 4 frames: K = 8 is limited by the clip, not the budget; a longer clip would be cut to 7.
    video_frames = 20
    frames_dir = root.parent / "long_colour"
    frames_dir.mkdir(exist_ok=True)
    from PIL import Image

    for t in range(video_frames):
        Image.fromarray(np.full((112, 160, 3), 10 * t, dtype=np.uint8)).save(frames_dir / f"{t:05d}.png")
    masks = [{t: obj0[0] for t in range(video_frames)} for _ in range(5)]
    clip = big.prepare(frames_dir, frame_masks=masks, encode=False)
    assert len(clip.frames) == 7
    assert any("reduced the keyframes from 8 to 7" in n for n in clip.notes)
    inp = big.prompt_inputs(clip, "Describe <object0>.")
    assert inp.length + NEW <= context
    # A question that does not fit is refused, never truncated.
    with pytest.raises(InputError, match="exceeds the model's"):
        big.ask(clip, "Is it " + "very " * 1500 + "big?")
    clip.close()
    del five


# ----------------------------------------------------------------------------------------------------
# per-frame features and boxes (on the real tiny model)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("roi_mode", ["official", "corrected"])
def test_spliced_regions_come_from_their_own_frame(bundle, colour_clip, roi_mode) -> None:
    from garvideo.model.processing import mask_box
    from garvideo.video import open_video

    root, obj0, obj1 = colour_clip
    gv = GarVideo(model=bundle, tracker="static", num_frames=4, roi_mode=roi_mode, max_new_tokens=NEW)
    clip = gv.prepare(root, frame_masks=[obj0, obj1])
    feats = clip.features
    assert feats.tokens.shape[0] == 4
    # Frame t's global tokens are frame t's own encoding (distinct colours -> distinct features).
    video = open_video(root)
    for t in range(4):
        union = obj0[t] | (obj1[t] if obj1[t] is not None else False)
        alone = bundle.encode_frames([video.frame(t)], [union])
        torch.testing.assert_close(feats.tokens[t], alone.tokens[0], rtol=1e-4, atol=1e-5)
    for t in range(3):
        assert not torch.allclose(feats.tokens[t], feats.tokens[t + 1], atol=1e-3)

    inp = gv.prompt_inputs(clip, "What is <object0> doing?")
    embeds = bundle.embed_prompt(inp.input_ids, feats.tokens, clip.regions)[0]  # (L, D)
    ids = inp.input_ids[0]
    image_pos = (ids == IMAGE_TOKEN_ID).nonzero().reshape(-1)
    torch.testing.assert_close(embeds[image_pos], feats.tokens.reshape(-1, feats.tokens.shape[-1]))
    masks = [obj0, obj1]
    starts = [s for s, _ in _runs(ids)]
    assert len(starts) == len(inp.region_order) == 7
    for start, (o, t) in zip(starts, inp.region_order):
        got = embeds[start : start + REGION_TOKENS]
        box = mask_box(masks[o][clip.frames[t]])
        want = replay_regions(feats.maps[t : t + 1], [box], None, roi_mode)[0]
        torch.testing.assert_close(got, want)
        other_t = (t + 1) % 4
        from_other_frame = replay_regions(feats.maps[other_t : other_t + 1], [box], None, roi_mode)[0]
        assert not torch.allclose(got, from_other_frame, atol=1e-4), (o, t)
        if roi_mode == "corrected":  # the official arithmetic samples near the corner for every box
            other_box = mask_box(obj0[other_t])
            with_other_box = replay_regions(feats.maps[t : t + 1], [other_box], None, roi_mode)[0]
            assert not torch.allclose(got, with_other_box, atol=1e-4), (o, t)
    clip.close()


# ----------------------------------------------------------------------------------------------------
# describe / ask end to end
# ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_describe_tracks_and_reports(gv, sample_clip) -> None:
    from garvideo.masks import load_mask

    masks = load_mask(sample_clip.prompt_mask)
    pieces: list[str] = []
    r = gv.describe(sample_clip.video_path, masks=masks, frame=0, stream=pieces.append)
    assert r.frames == [8, 24, 39]  # uniform segment midpoints of 48 frames, K = 3
    assert r.tracker == "flow"
    assert [o["id"] for o in r.objects] == ["object0", "object1"]
    assert "".join(pieces).strip() == r.text
    assert r.new_tokens <= NEW and r.prompt_tokens > 3 * frame_cost(2) - 256
    for key in ("decode", "tracking", "vision", "prefill", "generation", "total"):
        assert key in r.timings
    assert r.timings["tracking"] > 0 and r.timings["vision"] > 0 and r.timings["prefill"] > 0
    assert r.dtype == "float32" and r.to_json()["dtype"] == "float32"
    json.dumps(r.to_json())
    # Object 2 leaves the frame near the end of the clip: absent on the last keyframe (ground truth).
    gt_absent = [f for f in r.frames if not sample_clip.gt(f)[1].any()]
    assert r.objects[1]["absent_frames"] == gt_absent


@pytest.mark.slow
def test_questions_share_prefix_and_match_plain_generation(gv, sample_clip) -> None:
    from garvideo.masks import load_mask

    masks = load_mask(sample_clip.prompt_mask)
    clip = gv.prepare(sample_clip.video_path, masks=masks, frame=0, include_prompt_frame=True)
    assert 0 in clip.frames and isinstance(clip, PreparedClip)
    a1 = gv.ask(clip, "What is <object0> doing to <object1>?", options=["chasing", "ignoring"])
    a2 = gv.ask(clip, "What colour is <object1>?")
    a3 = gv.ask(clip, "What is <object0> doing to <object1>?", options=["chasing", "ignoring"])
    assert a1.timings["prefill"] > 0 and a2.timings["prefill"] == 0 and a3.timings["prefill"] == 0
    assert a1.timings["tracking"] > 0 and a2.timings["tracking"] == 0  # shared work is counted once
    assert len(clip.prefix_caches) == 1
    assert a1.text == a3.text and a1.letter == a3.letter
    assert a1.options == ["chasing", "ignoring"] and a1.letter in (None, "A", "B")
    assert a2.options is None and a2.letter is None
    # The cached-prefix path gives the same tokens as generating from the whole prompt at once.
    b = gv.bundle
    inp = gv.prompt_inputs(clip, "What colour is <object1>?")
    full = b.embed_prompt(inp.input_ids, clip.features.tokens, clip.regions)
    plain = b.generate(full, max_new_tokens=NEW)
    assert plain.text == a2.text
    cached = b.generate_from(
        next(iter(clip.prefix_caches.values())), inp.input_ids[:, inp.prefix_length :], max_new_tokens=NEW
    )
    assert cached.token_ids == plain.token_ids
    clip.close()


def test_bad_input(gv, sample_clip, colour_clip) -> None:
    from garvideo.masks import load_mask

    masks = load_mask(sample_clip.prompt_mask)
    path = sample_clip.video_path
    with pytest.raises(InputError, match="exactly one"):
        gv.prepare(path, encode=False)
    with pytest.raises(InputError, match="exactly one"):
        gv.prepare(path, masks=masks, frame_masks=[{0: masks[0]}], encode=False)
    with pytest.raises(InputError, match="1 to 5 objects"):
        gv.prepare(path, masks=masks * 3, encode=False)
    with pytest.raises(InputError, match="image size"):
        gv.prepare(path, masks=[np.ones((10, 10), dtype=bool)], encode=False)
    with pytest.raises(InputError, match="empty"):
        gv.prepare(path, masks=[np.zeros_like(masks[0])], encode=False)
    with pytest.raises(InputError, match="out of range"):
        gv.prepare(path, masks=masks, frame=480, encode=False)
    root, obj0, _ = colour_clip
    with pytest.raises(InputError, match="out of range"):
        gv.prepare(root, frame_masks=[{9: obj0[0]}], encode=False)
    with pytest.raises(InputError, match="no non-empty mask"):
        gv.prepare(root, frame_masks=[{0: None}], encode=False)
    clip = gv.prepare(root, frame_masks=[obj0], encode=False)
    with pytest.raises(InputError, match="at least 2 options"):
        gv.ask(clip, "Which?", options=["only one"])
    with pytest.raises(InputError, match="empty"):
        gv.ask(clip, "  ")
    with pytest.raises(InputError, match="already has its masks"):
        gv.describe(clip, masks=masks)
    clip.close()
    with pytest.raises(InputError, match="keyframe strategy"):
        GarVideo(model=gv.bundle, keyframes="best")
    with pytest.raises(InputError, match="roi_mode") as err:  # the library names its own field
        GarVideo(model=gv.bundle, roi_mode="fixed")
    assert err.value.source == "roi_mode"


def test_visible_strategy_prefers_frames_with_every_object(gv, sample_clip) -> None:
    from garvideo.masks import load_mask

    masks = load_mask(sample_clip.prompt_mask)
    clip = gv.prepare(sample_clip.video_path, masks=masks, frame=0, keyframes="visible", encode=False)
    assert len(clip.frames) == 3
    assert all(all(p) for p in zip(*clip.present))  # both objects visible on every keyframe
    assert clip.track is not None and len(clip.track.frames) == sample_clip.num_frames  # tracked throughout
    clip.close()


@pytest.mark.slow
def test_davis_clip_end_to_end(gv, shared_dir: Path) -> None:
    from garvideo.masks import load_mask

    seq = shared_dir / "data" / "davis2016"
    frames = seq / "JPEGImages" / "480p" / "blackswan"
    mask = load_mask(seq / "Annotations" / "480p" / "blackswan" / "00000.png")
    r = gv.describe(frames, masks=mask, frame=0)
    assert r.frames == [8, 25, 41]  # midpoints of 50 frames: 8.17, 24.5, 40.83
    assert r.objects[0]["absent_frames"] == []
    assert r.objects[0]["prompt_token"] == "<Prompt1>"


def test_dtype_auto(gv, bundle, monkeypatch) -> None:
    from garvideo.model.loading import auto_dtype, cpu_has_native_bf16, resolve_dtype

    amx = "processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n"
    avx2 = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"
    assert cpu_has_native_bf16(amx) and cpu_has_native_bf16(arm) and not cpu_has_native_bf16(avx2)
    cpu = torch.device("cpu")
    want = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert resolve_dtype("auto", cpu) == auto_dtype(cpu)[0] == want
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(InputError, match="auto or one of"):
        resolve_dtype("int8", cpu)
    # The default: $GARVIDEO_DTYPE (the suite pins float32 in conftest.py), else auto.
    assert resolve_dtype(None, cpu) == torch.float32
    monkeypatch.delenv("GARVIDEO_DTYPE")
    assert resolve_dtype(None, cpu) == want
    monkeypatch.setenv("GARVIDEO_DTYPE", "fp8")
    with pytest.raises(InputError, match="GARVIDEO_DTYPE"):
        resolve_dtype(None, cpu)
    monkeypatch.setenv("GARVIDEO_DTYPE", "float32")
    # Exposed before loading (resolved, nothing loaded) and after (the loaded model's), and in the results.
    lazy = GarVideo(model="no/such-model", dtype="auto", device="cpu")
    assert lazy.model_dtype == str(want).replace("torch.", "") and not lazy.model_loaded
    assert gv.model_dtype == "float32"
