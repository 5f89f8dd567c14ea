"""GAR model on the tiny checkpoint: loading, vision features, prompt splicing, generation, input checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from garvideo.errors import InputError, ModelUnavailableError
from garvideo.model import (
    REGION_TOKEN_IDS,
    GarConfig,
    GarModel,
    build_video_prompt,
    load_gar,
    region_run_starts,
    replay_regions,
    save_model,
    video_region_order,
)
from garvideo.model.prompts import IMAGE_TOKEN_ID


@pytest.fixture(scope="module")
def bundle(tiny_model_dir):
    return load_gar(tiny_model_dir, dtype="float32", device="cpu")


def _image(h=300, w=500, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


# -- loading ---------------------------------------------------------------------------------------------------
def test_tiny_model_layout(tiny_model_dir):
    names = {p.name for p in Path(tiny_model_dir).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= names
    cfg = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    assert cfg["model_type"] == "GAR" and cfg["crop_tokens_ids"] == [128004, 128005, 128008, 128010, 128011]
    assert cfg["mllm_config"]["vision_config"]["model_args"]["img_size"] == [448, 448]
    keys = load_file(str(Path(tiny_model_dir) / "model.safetensors")).keys()
    assert "mask_patch_embedding.weight" in keys
    assert all(k.startswith("mllm.") or k == "mask_patch_embedding.weight" for k in keys)
    assert sum(p.stat().st_size for p in Path(tiny_model_dir).iterdir()) < 20e6


def test_tokenizer_special_ids(bundle):
    tok = bundle.tokenizer
    ids = tok.convert_tokens_to_ids(
        [
            "<|begin_of_text|>",
            "<|image|>",
            "<|start_header_id|>",
            "<|eot_id|>",
            "<Prompt0>",
            "<Prompt4>",
            "<NO_Prompt>",
        ]
    )
    assert ids == [128000, 128002, 128006, 128009, 128256, 128260, 128261]
    placeholders = [f"<|reserved_special_token_{k + 2}|>" for k in range(5)]
    assert tok.convert_tokens_to_ids(placeholders) == list(REGION_TOKEN_IDS)
    assert bundle.processor.eos_token_id == 128009


@pytest.mark.slow
def test_round_trip_identical_logits(bundle, tmp_path):
    img, m = _image(), _mask(300, 500, 40, 200, 100, 260)
    embeds, _ = bundle.prepare_image(img, [m])
    with torch.no_grad():
        logits = bundle.model(embeds, logits_to_keep=32).logits
    save_model(bundle.model, bundle.processor, tmp_path / "copy")
    again = load_gar(tmp_path / "copy", dtype="float32", device="cpu")
    embeds2, _ = again.prepare_image(img, [m])
    with torch.no_grad():
        logits2 = again.model(embeds2, logits_to_keep=32).logits
    assert torch.equal(embeds, embeds2)
    assert torch.equal(logits, logits2)


def _copy_with_state(src: Path, dst: Path, edit) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        if p.name != "model.safetensors":
            (dst / p.name).write_bytes(p.read_bytes())
    state = load_file(str(src / "model.safetensors"))
    edit(state)
    save_file(state, str(dst / "model.safetensors"))
    return dst


def test_missing_key_fails_loudly(tiny_model_dir, tmp_path):
    bad = _copy_with_state(
        Path(tiny_model_dir), tmp_path / "m", lambda s: s.pop("mask_patch_embedding.weight")
    )
    with pytest.raises(InputError, match=r"1 missing keys \(e.g. mask_patch_embedding.weight\)"):
        load_gar(bad, dtype="float32", device="cpu")


def test_unexpected_key_fails_loudly(tiny_model_dir, tmp_path):
    bad = _copy_with_state(
        Path(tiny_model_dir), tmp_path / "u", lambda s: s.__setitem__("mllm.extra.weight", torch.zeros(2))
    )
    with pytest.raises(InputError, match=r"unexpected keys \(e.g. mllm.extra.weight\)"):
        load_gar(bad, dtype="float32", device="cpu")


def test_wrong_shape_fails_loudly(tiny_model_dir, tmp_path):
    bad = _copy_with_state(
        Path(tiny_model_dir),
        tmp_path / "s",
        lambda s: s.__setitem__("mask_patch_embedding.weight", torch.zeros(1, 3, 14, 14)),
    )
    with pytest.raises(InputError, match="wrong shape"):
        load_gar(bad, dtype="float32", device="cpu")


def test_offline_hub_id_raises_model_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("GARVIDEO_MODEL", raising=False)
    with pytest.raises(ModelUnavailableError) as info:
        load_gar()
    msg = str(info.value)
    assert "hf download HaochenWang/GAR-1B" in msg and "--model DIR" in msg and "GARVIDEO_MODEL" in msg


def test_env_var_names_the_default_model(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("GARVIDEO_MODEL", str(tiny_model_dir))
    assert load_gar(device="cpu").name == str(tiny_model_dir)


def test_bad_folder_is_input_error(tmp_path):
    with pytest.raises(InputError, match="config.json"):
        load_gar(tmp_path, device="cpu")
    with pytest.raises(InputError, match="no such model folder"):
        load_gar(tmp_path / "nope" / "deeper" / "x", device="cpu")


@pytest.mark.slow
def test_bf16_on_cpu(tiny_model_dir):
    b = load_gar(tiny_model_dir, dtype="bfloat16", device="cpu")
    assert b.dtype == torch.bfloat16
    # Buffers get the dtypes transformers' from_pretrained gives them: Llama's rope stays float32.
    buffers = dict(b.model.named_buffers())
    assert buffers["mllm.model.language_model.rotary_emb.inv_freq"].dtype == torch.float32
    assert {p.dtype for p in b.model.parameters()} == {torch.bfloat16}
    r = b.describe(_image(), _mask(300, 500, 10, 90, 10, 90), max_new_tokens=3)
    assert len(r.token_ids) <= 3


# -- vision ----------------------------------------------------------------------------------------------------
def test_zero_initialised_mask_embedding_leaves_features_unchanged(tiny_model_dir):
    torch.manual_seed(0)
    model = GarModel(GarConfig.from_pretrained(tiny_model_dir)).eval()
    assert torch.count_nonzero(model.mask_patch_embedding.weight) == 0
    pix = torch.randn(2, 3, 448, 448)
    masks = torch.zeros(2, 448, 448, dtype=torch.bool)
    masks[:, 100:300, 50:200] = True
    with torch.no_grad():
        assert torch.equal(model.image_features(pix, masks), model.image_features(pix, None))


def test_mask_changes_features_of_trained_embedding(bundle):
    pix = torch.randn(1, 3, 448, 448)
    masks = torch.zeros(1, 448, 448, dtype=torch.bool)
    masks[:, 0:28, 0:28] = True  # one 2x2-patch block: the first pooled token
    with torch.no_grad():
        a = bundle.model.image_features(pix, masks)
        b = bundle.model.image_features(pix, torch.zeros_like(masks))
    assert a.shape == (1, 256, bundle.model.hidden_size)
    assert not torch.equal(a, b)


def test_image_tiles_use_the_official_v1_resize(bundle):
    """Tiles = torchvision v1 bicubic+antialias resize of the uint8 image, split row-major, (x-127.5)/127.5
    (the official fast processor); the grid is transformers' canvas search (same tile count)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    img = _image(300, 1000)
    m = _mask(300, 1000, 0, 150, 0, 500)
    inputs = bundle.processor.preprocess_image(img, [m])
    direct = bundle.processor.image_processor(images=[img], return_tensors="pt")["pixel_values"][0]
    assert direct.shape == inputs.pixel_values.shape  # same canvas and tile count
    ncw, nch = inputs.aspect_ratio
    assert ncw >= nch and inputs.num_tiles == 1 + ncw * nch
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    thumb = tvf.resize(x, [448, 448], interpolation=InterpolationMode.BICUBIC, antialias=True)
    big = tvf.resize(x, [448 * nch, 448 * ncw], interpolation=InterpolationMode.BICUBIC, antialias=True)[0]
    tiles = [big[:, r * 448 : (r + 1) * 448, c * 448 : (c + 1) * 448] for r in range(nch) for c in range(ncw)]
    expected = (torch.cat([thumb, torch.stack(tiles)]).float() - 127.5) / 127.5
    assert torch.equal(inputs.pixel_values, expected)
    # Nearest-resampled union mask: the thumbnail's top-left quadrant is set, the rest not.
    thumb_mask = inputs.mask_values[0]
    assert thumb_mask[:224, :224].all() and not thumb_mask[224:, :].any() and not thumb_mask[:, 224:].any()


# -- prompt splicing -------------------------------------------------------------------------------------------
def test_embed_prompt_splices_image_and_regions(bundle):
    from garvideo.model import build_image_prompt

    prompt = build_image_prompt(num_tiles=2, num_regions=2, question="Compare <Prompt0> and <Prompt1>.")
    ids = bundle.tokenize(prompt)
    assert int((ids == IMAGE_TOKEN_ID).sum()) == 512
    starts = region_run_starts(ids)
    assert len(starts) == 2
    assert ids[0, starts[0]] == REGION_TOKEN_IDS[0] and ids[0, starts[1]] == REGION_TOKEN_IDS[1]
    d = bundle.model.hidden_size
    image = torch.arange(512 * d, dtype=torch.float32).reshape(2, 256, d)
    regions = torch.stack([torch.full((256, d), -1.0), torch.full((256, d), -2.0)])
    embeds = bundle.embed_prompt(ids, image, regions)[0]
    pos = (ids[0] == IMAGE_TOKEN_ID).nonzero().reshape(-1)
    assert torch.equal(embeds[pos], image.reshape(-1, d))
    assert torch.all(embeds[starts[0] : starts[0] + 256] == -1) and torch.all(
        embeds[starts[1] : starts[1] + 256] == -2
    )
    other = torch.ones_like(ids[0], dtype=torch.bool)
    other[pos] = False
    for s in starts:
        other[s : s + 256] = False
    plain = bundle.model.get_input_embeddings()(ids[0])
    assert torch.equal(embeds[other], plain[other])
    with pytest.raises(InputError, match="2 region placeholder runs of 256 in the prompt for 1 regions"):
        bundle.embed_prompt(ids, image, regions[:1])
    with pytest.raises(InputError, match=r"512 <\|image\|> tokens in the prompt for 256 image features"):
        bundle.embed_prompt(ids, image[:1], regions)


def test_region_runs_must_be_whole():
    ids = torch.tensor([[1, 2] + [REGION_TOKEN_IDS[0]] * 255 + [3]])
    with pytest.raises(InputError, match="not a multiple of 256"):
        region_run_starts(ids)
    ids = torch.tensor([[1] + [REGION_TOKEN_IDS[1]] * 512 + [REGION_TOKEN_IDS[2]] * 256])
    assert region_run_starts(ids) == [1, 257, 513]


def test_multi_region_prompt_uses_each_regions_own_box(bundle):
    img = _image(448, 896)
    masks = [_mask(448, 896, 0, 100, 0, 200), _mask(448, 896, 300, 448, 600, 896)]
    embeds, inputs = bundle.prepare_image(
        img, masks, "What is between <Prompt0> and <Prompt1>?", roi_mode="corrected"
    )
    assert inputs.boxes[0] != inputs.boxes[1]
    ids = bundle.tokenize(
        __import__("garvideo.model", fromlist=["build_image_prompt"]).build_image_prompt(
            inputs.num_tiles, 2, "What is between <Prompt0> and <Prompt1>?"
        )
    )
    starts = region_run_starts(ids)
    with torch.no_grad():
        feats = bundle.model.encode_image(inputs.pixel_values, inputs.mask_values, inputs.aspect_ratio)
        want = replay_regions(feats.feature_map, inputs.boxes, None, "corrected")
    assert torch.allclose(embeds[0, starts[0] : starts[0] + 256], want[0])
    assert torch.allclose(embeds[0, starts[1] : starts[1] + 256], want[1])
    assert not torch.allclose(want[0], want[1])


# -- generation ------------------------------------------------------------------------------------------------
def test_describe_is_deterministic_and_greedy(bundle):
    img, m = _image(), _mask(300, 500, 40, 200, 100, 260)
    a = bundle.describe(img, m, max_new_tokens=5)
    b = bundle.describe(img, [m], max_new_tokens=5)
    assert a.token_ids == b.token_ids and 1 <= len(a.token_ids) <= 5
    assert a.present == [True] and isinstance(a.text, str)


def test_batch_of_regions_and_question(bundle):
    img = _image()
    masks = [
        _mask(300, 500, 0, 50, 0, 50),
        _mask(300, 500, 100, 200, 100, 200),
        _mask(300, 500, 250, 300, 400, 500),
    ]
    r = bundle.describe(img, masks, max_new_tokens=3)
    assert r.num_regions == 3 and r.present == [True] * 3
    ans = bundle.ask(
        img,
        masks[:2],
        "Which is larger, <Prompt0> or <Prompt1>?",
        options=["<Prompt0>", "<Prompt1>"],
        max_new_tokens=2,
    )
    assert ans.options == ["<Prompt0>", "<Prompt1>"] and ans.choice in (None, "A", "B")


def test_empty_mask_is_handled(bundle):
    img = _image()
    empty = np.zeros((300, 500), bool)
    r = bundle.describe(img, empty, max_new_tokens=2)
    assert r.present == [False]
    r2 = bundle.describe(img, [_mask(300, 500, 10, 60, 10, 60), empty], max_new_tokens=2)
    assert r2.present == [True, False]


def test_prefix_cache_gives_the_same_logits_and_tokens(bundle):
    embeds, _ = bundle.prepare_image(_image(), [_mask(300, 500, 40, 200, 100, 260)])
    k = embeds.shape[1] - 17
    prefix = bundle.prefill(embeds[:, :k])
    full = bundle.generate(embeds, max_new_tokens=4)
    part = bundle.generate(embeds[:, k:], prefix=prefix, max_new_tokens=4)
    again = bundle.generate(embeds[:, k:], prefix=prefix, max_new_tokens=4)
    assert full.token_ids == part.token_ids == again.token_ids
    import copy

    with torch.no_grad():
        a = bundle.model(embeds, logits_to_keep=1).logits[0, -1]
        b = bundle.model(
            embeds[:, k:], past_key_values=copy.deepcopy(prefix.cache), use_cache=True, logits_to_keep=1
        ).logits[0, -1]
    assert torch.allclose(a, b, atol=1e-5)


def test_streaming_callback(bundle):
    pieces: list[str] = []
    embeds, _ = bundle.prepare_image(_image(), [_mask(300, 500, 40, 200, 100, 260)])
    res = bundle.generate(embeds, max_new_tokens=4, on_text=pieces.append)
    assert "".join(pieces).strip() == res.text


# -- video -----------------------------------------------------------------------------------------------------
def test_video_path_end_to_end(bundle):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    obj0 = [_mask(120, 160, 10, 50, 10, 60) for _ in range(3)]
    obj1 = [_mask(120, 160, 60, 110, 80, 150), np.zeros((120, 160), bool), _mask(120, 160, 70, 115, 90, 150)]
    unions = [a | b for a, b in zip(obj0, obj1)]
    feats = bundle.encode_frames(frames, unions)
    d = bundle.model.hidden_size
    assert feats.tokens.shape == (3, 256, d) and feats.maps.shape == (3, d, 16, 16)
    present = [[True, True, True], [True, False, True]]
    order = video_region_order(present)
    assert order == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2)]
    from garvideo.model import mask_box

    boxes = [mask_box((obj0, obj1)[k][t]) for k, t in order]
    regions = replay_regions(feats.maps, boxes, [t for _, t in order], "official")
    ids = bundle.tokenize(build_video_prompt(3, present, "What do <Prompt0> and <Prompt1> do?"))
    embeds = bundle.embed_prompt(ids, feats.tokens, regions)
    assert embeds.shape[1] == ids.shape[1]
    res = bundle.generate(embeds, max_new_tokens=3)
    assert len(res.token_ids) <= 3


# -- bad input -------------------------------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors(bundle):
    img = _image()
    with pytest.raises(InputError, match=r"mask size 400x300 != image size 500x300"):
        bundle.describe(img, np.zeros((300, 400), bool))
    with pytest.raises(InputError, match="expected 1 to 5 region masks, got 6"):
        bundle.describe(img, [_mask(300, 500, 0, 10, 0, 10)] * 6)
    with pytest.raises(InputError, match="mask is not binary"):
        bundle.describe(img, np.full((300, 500), 7, np.uint8))
    with pytest.raises(InputError, match="expected 1 to 5 region masks, got 0"):
        bundle.describe(img, [])
    with pytest.raises(InputError, match="empty question"):
        bundle.ask(img, _mask(300, 500, 0, 10, 0, 10), "  ")
    with pytest.raises(InputError, match="uint8"):
        bundle.describe(img.astype(np.float32), _mask(300, 500, 0, 10, 0, 10))
    # 0/255 masks are binary too
    r = bundle.describe(img, _mask(300, 500, 0, 10, 0, 10).astype(np.uint8) * 255, max_new_tokens=1)
    assert r.present == [True]


def test_cli_make_tiny_model(tmp_path):
    from typer.testing import CliRunner

    from garvideo.cli import app

    result = CliRunner().invoke(app, ["make-tiny-model", str(tmp_path / "t"), "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["seed"] == 3 and "model.safetensors" in info["files"]
    b = load_gar(tmp_path / "t", device="cpu")
    assert b.model.hidden_size == 32


def test_generate_from_prefix_matches_full_prompt(bundle):
    from garvideo.model import build_image_prompt

    inputs = bundle.processor.preprocess_image(_image(), [_mask(300, 500, 40, 200, 100, 260)])
    ids = bundle.tokenize(build_image_prompt(inputs.num_tiles, 1))
    with torch.no_grad():
        feats = bundle.model.encode_image(inputs.pixel_values, inputs.mask_values, inputs.aspect_ratio)
        regions = replay_regions(feats.feature_map, inputs.boxes, None, "official")
    k = ids.shape[1] - 6  # everything but the assistant header is the shared prefix
    prefix = bundle.prefill(bundle.embed_prompt(ids[:, :k], feats.tokens, regions))
    full = bundle.generate(bundle.embed_prompt(ids, feats.tokens, regions), max_new_tokens=3)
    cont = bundle.generate_from(prefix, ids[:, k:], max_new_tokens=3)
    assert cont.token_ids == full.token_ids


@pytest.mark.slow
def test_tiny_model_is_reproducible(tmp_path):
    from garvideo.model import make_tiny_model

    a = load_file(str(make_tiny_model(tmp_path / "a", seed=5) / "model.safetensors"))
    b = load_file(str(make_tiny_model(tmp_path / "b", seed=5) / "model.safetensors"))
    c = load_file(str(make_tiny_model(tmp_path / "c", seed=6) / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_pil_image_and_mask(bundle):
    from PIL import Image

    img = Image.fromarray(_image())
    mask = Image.fromarray(_mask(300, 500, 40, 200, 100, 260).astype(np.uint8) * 255)
    a = bundle.describe(img, mask, max_new_tokens=2)
    b = bundle.describe(_image(), _mask(300, 500, 40, 200, 100, 260), max_new_tokens=2)
    assert a.token_ids == b.token_ids


def test_tiny_model_is_marked_random_and_prints_visible_text(bundle, tiny_model_dir):
    cfg = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    assert cfg["garvideo_random_init"] is True and bundle.random_weights
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    mask = np.zeros((64, 80), bool)
    mask[10:30, 20:50] = True
    text = bundle.describe(image, [mask], max_new_tokens=4).text
    assert text.strip(), "greedy decoding of the tiny model must give visible text"
