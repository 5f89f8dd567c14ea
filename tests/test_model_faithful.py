"""Faithfulness to the official GAR code (github Haochen-Wang409/Grasp-Any-Region), pinned on the tiny model.

Each test names the official behaviour it pins; see the docstrings of ``garvideo.model.configuration``,
``garvideo.model.modeling`` and ``garvideo.model.processing`` for the sources.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.image_utils import PILImageResampling

from garvideo.model import GarConfig, load_gar
from garvideo.model.loading import build_model, load_model, save_model
from garvideo.model.prompts import NO_PROMPT_ID
from garvideo.model.tiny import tiny_config_dict

HEAD = "mllm.lm_head.weight"
EMBED = "mllm.model.language_model.embed_tokens.weight"


@pytest.fixture(scope="module")
def bundle(tiny_model_dir):
    return load_gar(tiny_model_dir, dtype="float32", device="cpu")


def _gar8b_style_config() -> dict:
    """A tiny config laid out as transformers 4.56 wrote GAR-8B's: the PerceptionLM-level
    ``tie_word_embeddings`` is the 4.x ``PretrainedConfig`` default (True), the Llama text config says False."""
    d = tiny_config_dict()
    d["mllm_config"]["tie_word_embeddings"] = True
    d["mllm_config"]["text_config"]["tie_word_embeddings"] = False
    # Keys a 4.x GARConfig.to_dict also writes; they must be accepted and ignored.
    d["mllm_config"]["use_flash_attn"] = True
    d["mllm_config"]["torch_dtype"] = "bfloat16"
    d["use_flash_attn"] = True
    d["patch_size_h"] = d["patch_size_w"] = 14
    d["kernel_size"] = [14, 14]
    return d


# -- 1. tied or untied LM head ---------------------------------------------------------------------------
def test_untied_text_config_wins_over_perception_lm_default():
    cfg = GarConfig.from_dict(_gar8b_style_config())
    assert cfg.tie_word_embeddings is False
    assert cfg.mllm_config.tie_word_embeddings is False  # normalised to the text config's flag
    model = build_model(cfg)
    assert not model.tied_embeddings
    assert model.mllm.lm_head.weight is not model.get_input_embeddings().weight


def test_untied_head_survives_save_and_load(tmp_path):
    cfg = GarConfig.from_dict(_gar8b_style_config())
    model = build_model(cfg).to(torch.bfloat16)
    with torch.no_grad():
        model.mllm.lm_head.weight.fill_(0.25)
        model.get_input_embeddings().weight.fill_(-0.5)
    save_model(model, None, tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert {HEAD, EMBED} <= keys  # an untied checkpoint stores both, as GAR-8B's does
    loaded = load_model(tmp_path, dtype=torch.float32, device=torch.device("cpu"))
    assert not loaded.tied_embeddings
    assert torch.all(loaded.mllm.lm_head.weight == 0.25)
    assert torch.all(loaded.get_input_embeddings().weight == -0.5)
    assert loaded.mllm.get_output_embeddings().weight is loaded.mllm.lm_head.weight
    out = loaded(torch.randn(1, 3, 32), logits_to_keep=1)
    logits = out.logits[0, -1]  # (V,): every row of the head is 0.25, so every logit is the same
    assert logits.shape == (128262,) and torch.allclose(logits, logits[0].expand_as(logits))


def test_tied_text_config_ties_even_if_top_level_says_false(tmp_path):
    d = tiny_config_dict()
    d["mllm_config"]["tie_word_embeddings"] = False
    d["mllm_config"]["text_config"]["tie_word_embeddings"] = True  # GAR-1B (Llama-3.2-1B ties)
    cfg = GarConfig.from_dict(d)
    assert cfg.tie_word_embeddings and cfg.mllm_config.tie_word_embeddings
    model = build_model(cfg)
    assert model.mllm.lm_head.weight is model.get_input_embeddings().weight
    save_model(model, None, tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        assert HEAD not in set(f.keys())  # stored once, as transformers 4.x saves tied weights
    loaded = load_model(tmp_path, dtype=torch.float32, device=torch.device("cpu"))
    assert loaded.mllm.lm_head.weight is loaded.get_input_embeddings().weight


def test_config_round_trip_keeps_the_text_flag():
    cfg = GarConfig.from_dict(_gar8b_style_config())
    again = GarConfig.from_dict(cfg.to_dict())
    assert again.tie_word_embeddings is False
    assert again.to_dict()["mllm_config"]["text_config"]["tie_word_embeddings"] is False


def test_mask_embedding_width_follows_num_features():
    d = tiny_config_dict()
    assert GarConfig.from_dict(d).vision_width == 64  # no num_features: the ViT width
    d["mllm_config"]["vision_config"]["num_features"] = 48
    assert GarConfig.from_dict(d).vision_width == 48  # GARConfig: vision_config.num_features
    assert GarConfig.from_dict(d).kernel_size == (14, 14)  # img_size 448 // ref_feat_shape 32


# -- 2. mask patch embedding ------------------------------------------------------------------------------
def _official_vit(model, pixel_values, mask_embeds, *, after_norm_pre: bool = False):
    """``modeling_perception_lm.py:custom_forward_features`` written out with the timm modules, then the
    projector on the patch tokens (cls token dropped, ``get_image_features``)."""
    tm = model.mllm.model.vision_tower.timm_model
    x = tm.patch_embed(pixel_values)  # (N, P, C)
    if not after_norm_pre:
        x = x + mask_embeds
    x, rope = tm._pos_embed(x)  # cls token + absolute pos-embed, rope table
    x = tm.norm_pre(x)
    if after_norm_pre:
        x = torch.cat([x[:, :1], x[:, 1:] + mask_embeds], dim=1)
    for blk in tm.blocks:
        x = blk(x, rope=rope)
    x = tm.norm(x)
    return model.mllm.model.multi_modal_projector(x[:, 1:])  # (N, 256, D)


def test_mask_embedding_is_added_before_cls_pos_embed_and_norm_pre(bundle):
    model = bundle.model
    g = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(2, 3, 448, 448, generator=g)
    union = torch.zeros(2, 448, 448, dtype=torch.bool)
    union[0, 100:300, 50:200] = True
    union[1, :, 224:] = True
    with torch.no_grad():
        ours = model.image_features(pixel_values, union)
        binary = union.float()[:, None].expand(-1, 3, -1, -1)  # 3 equal 0/1 channels
        mask_embeds = model.mask_patch_embedding(binary).flatten(2).transpose(1, 2)  # (N, 1024, C)
        ref = _official_vit(model, pixel_values, mask_embeds)
        elsewhere = _official_vit(model, pixel_values, mask_embeds, after_norm_pre=True)
    assert ours.shape == (2, 256, 32)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, elsewhere, atol=1e-4)  # the place matters


def test_official_mask_encoding_decodes_to_the_union(bundle):
    """The official inference path: a prompt-id map (0..4 = prompts, 5 = ``<NO_Prompt>``) goes through the
    image processor (nearest, rescaled, normalised with mean = std = 0.5), is cast to bf16, and
    ``GARModel.generate`` decodes ``round((v + 1) / 2 · 255)``, clamps to [0, 5] and keeps ``≠ 5``. That is
    bit-for-bit the nearest-resampled union garvideo feeds the mask embedding, on every tile."""
    # 700×300 with max_num_tiles 4: (4, 1) and (3, 1) both upscale the height to 448; the later candidate
    # in _find_supported_aspect_ratios order, (3, 1), wins the tie (image_processing_perception_lm_fast.py).
    h, w = 300, 700
    id_map = np.full((h, w), NO_PROMPT_ID, dtype=np.uint8)
    m0 = np.zeros((h, w), bool)
    m0[20:150, 30:400] = True
    m1 = np.zeros((h, w), bool)
    m1[100:290, 350:690] = True
    id_map[m0] = 0
    id_map[m1 & ~m0] = 1  # the first prompt wins where masks overlap (eval_dataset.py)
    # The official fast processor hands its integer ``resample`` (PILImageResampling.NEAREST = 0) to
    # torchvision's v1 ``F.resize`` on the uint8 tensor, splits the (3, 1) canvas row-major after the
    # thumbnail, then normalises with the fused (x - 127.5) / 127.5.
    from torchvision.transforms import functional as tvf

    x = torch.from_numpy(np.repeat(id_map[:, :, None], 3, axis=2)).permute(2, 0, 1)[None]
    thumb = tvf.resize(x, [448, 448], interpolation=int(PILImageResampling.NEAREST))
    big = tvf.resize(x, [448, 3 * 448], interpolation=int(PILImageResampling.NEAREST))[0]
    tiles = torch.cat([thumb, torch.stack([big[:, :, c * 448 : (c + 1) * 448] for c in range(3)])])
    out = (tiles.float() - 127.5) / 127.5
    values = torch.round((out.to(torch.bfloat16).float() + 1.0) / 2.0 * 255.0).long().clamp(0, NO_PROMPT_ID)
    official = values != NO_PROMPT_ID  # (N, 3, 448, 448)
    assert torch.equal(official[:, 0], official[:, 1]) and torch.equal(official[:, 0], official[:, 2])
    image = np.zeros((h, w, 3), np.uint8)
    ours = bundle.processor.preprocess_image(image, [m0, m1])
    assert ours.aspect_ratio == (3, 1) and ours.num_tiles == 4
    assert torch.equal(ours.mask_values, official[:, 0])


def test_mask_embedding_input_is_three_binary_channels(bundle):
    model = bundle.model
    union = torch.zeros(1, 448, 448, dtype=torch.bool)
    union[0, :14, :28] = True  # exactly the first two patches of the first row
    with torch.no_grad():
        emb = model.mask_embeddings(union)  # (1, C, 32, 32)
    w = model.mask_patch_embedding.weight  # (C, 3, 14, 14)
    expected = w.sum(dim=(1, 2, 3))  # a full patch of ones in all three channels
    torch.testing.assert_close(emb[0, :, 0, 0], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(emb[0, :, 0, 1], expected, rtol=1e-5, atol=1e-6)
    assert torch.all(emb[0, :, 0, 2] == 0) and torch.all(emb[0, :, 1, 0] == 0)


# -- 5. generation defaults -------------------------------------------------------------------------------
def test_generation_defaults_are_the_official_ones(bundle):
    # evaluation/GAR-Bench/inference.py, demo/gar_with_mask.py: greedy, max_new_tokens=1024,
    # eos = tokenizer.eos_token_id (<|eot_id|>), pad = tokenizer.pad_token_id.
    kwargs = bundle._generate_kwargs({})
    assert kwargs["max_new_tokens"] == 1024
    assert kwargs["eos_token_id"] == 128009
    assert kwargs.get("pad_token_id") == 128001
    assert "do_sample" not in kwargs  # GarModel.generate defaults to greedy (do_sample=False, num_beams=1)


def test_transformers4_config_keys_build_the_same_model():
    """A config in the shape transformers 4.56 writes (``GARConfig.to_dict``): timm wrapper extras, the legacy
    ``rope_scaling`` key. The Llama-3 rope scaling must survive (it changes every low-frequency band)."""
    import math

    d = _gar8b_style_config()
    d["mllm_config"]["vision_config"].update(
        {
            "num_classes": 0,
            "num_features": 64,
            "initializer_range": 0.02,
            "pretrained_cfg": {"tag": "fb", "input_size": [3, 336, 336], "num_classes": 0},
        }
    )
    model = build_model(GarConfig.from_dict(d))
    keys = model.state_dict().keys()
    assert not [k for k in keys if ".head." in k or "fc_norm" in k or "attn_pool" in k]
    inv = model.mllm.model.language_model.rotary_emb.inv_freq.double()
    # Llama-3 rope by hand: theta 5e5, head_dim 16, factor 32, low/high freq factors 1/4, original 8192.
    base = 1.0 / (500000.0 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16))
    expected = []
    for f in base.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < 8192 / 4.0:
            expected.append(f)
        elif wavelen > 8192 / 1.0:
            expected.append(f / 32.0)
        else:
            s = (8192 / wavelen - 1.0) / (4.0 - 1.0)
            expected.append((1 - s) * f / 32.0 + s * f)
    torch.testing.assert_close(inv, torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=0)
    assert expected[-1] == pytest.approx(base[-1].item() / 32.0)  # the lowest band is scaled down 32×


def test_rope_table_is_float32_in_a_bf16_model(tiny_model_dir):
    """timm 1.0.19 (the official version) builds PE's rope table in float32 whatever the model dtype, and
    transformers 4.56 never casts buffers; a bf16 load must keep the float32 table (not a bf16-rounded one)."""
    from garvideo.model.loading import load_model

    m16 = load_model(tiny_model_dir, dtype=torch.bfloat16, device=torch.device("cpu"))
    m32 = load_model(tiny_model_dir, dtype=torch.float32, device=torch.device("cpu"))
    rope16 = m16.mllm.model.vision_tower.timm_model.rope.pos_embed
    rope32 = m32.mllm.model.vision_tower.timm_model.rope.pos_embed
    assert rope16.dtype == torch.float32
    assert torch.equal(rope16, rope32)
    assert not torch.equal(rope16, rope16.to(torch.bfloat16).float())  # bf16 would round it
    assert (
        m16.dtype == torch.bfloat16
        and m16.mllm.model.language_model.rotary_emb.inv_freq.dtype == torch.float32
    )
    with torch.no_grad():
        out = m16.image_features(torch.zeros(1, 3, 448, 448), torch.zeros(1, 448, 448, dtype=torch.bool))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
