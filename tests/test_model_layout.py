"""``make-tiny-model`` writes the layout transformers 4.56 (the official code) loads; garvideo reads it back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from transformers import LlamaConfig, PreTrainedTokenizerFast

from garvideo.model import apply_chat_template, load_gar
from garvideo.model.configuration import GarConfig, rope_settings


def test_config_uses_the_v4_keys(tiny_model_dir: Path) -> None:
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    text = cfg["mllm_config"]["text_config"]
    assert "rope_parameters" not in text and "dtype" not in text
    assert text["rope_theta"] == 500000.0
    assert text["rope_scaling"] == {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    }
    vision = cfg["mllm_config"]["vision_config"]
    assert (
        vision["num_features"] == vision["model_args"]["embed_dim"] == cfg["mask_path_embedding_out_channels"]
    )
    # transformers 5 reads the v4 keys back into rope_parameters (the LM garvideo builds uses llama3 rope)
    back = GarConfig.from_pretrained(tiny_model_dir).mllm_config.text_config
    assert rope_settings(back)["rope_type"] == "llama3" and rope_settings(back)["rope_theta"] == 500000.0
    assert isinstance(back, LlamaConfig)


def test_tokenizer_and_processor_files(tiny_model_dir: Path) -> None:
    for name in (
        "tokenizer.json",
        "special_tokens_map.json",
        "preprocessor_config.json",
        "video_preprocessor_config.json",
        "processor_config.json",
        "chat_template.json",
    ):
        assert (tiny_model_dir / name).is_file(), name
    tok_cfg = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tok_cfg["extra_special_tokens"] == {"image_token": "<|image|>", "video_token": "<|video|>"}
    special = json.loads((tiny_model_dir / "special_tokens_map.json").read_text())
    assert special["bos_token"] == "<|begin_of_text|>" and special["eos_token"] == "<|eot_id|>"
    proc = json.loads((tiny_model_dir / "processor_config.json").read_text())
    assert proc == {"processor_class": "PerceptionLMProcessor", "patch_size": 14, "pooling_ratio": 2}
    # The stored chat template renders exactly garvideo's prompt (one image, one text, generation prompt).
    tok = PreTrainedTokenizerFast.from_pretrained(str(tiny_model_dir))
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "  What is <Prompt0>? "}]}
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == apply_chat_template("What is <Prompt0>?", num_image_tokens=1)
    system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(
        system, tokenize=False, add_generation_prompt=False
    ) == apply_chat_template("Hi", num_image_tokens=0, system_message="Be brief.").removesuffix(
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_saved_folder_round_trips(tiny_model_dir: Path, tmp_path: Path) -> None:
    """garvideo loads its own folder, saves it again, and the re-saved folder gives the same outputs."""
    from garvideo.model.loading import save_model

    a = load_gar(tiny_model_dir, device="cpu", dtype="float32")
    save_model(a.model, a.processor, tmp_path / "again")
    b = load_gar(tmp_path / "again", device="cpu", dtype="float32")
    img = np.full((64, 96, 3), 120, np.uint8)
    mask = np.zeros((64, 96), bool)
    mask[10:40, 20:70] = True
    ra, rb = a.describe(img, mask, max_new_tokens=3), b.describe(img, mask, max_new_tokens=3)
    assert ra.token_ids == rb.token_ids
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == json.loads(
        (tiny_model_dir / "config.json").read_text()
    )


def test_the_transformers_5_layout_still_loads(tiny_model_dir: Path) -> None:
    """A config.json written by transformers 5 (rope_parameters, dtype) gives the same configuration."""
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    text = cfg["mllm_config"]["text_config"]
    text["rope_parameters"] = {"rope_theta": text.pop("rope_theta"), **text.pop("rope_scaling")}
    text["dtype"] = text.pop("torch_dtype", None)
    v5 = GarConfig.from_dict(cfg)
    v4 = GarConfig.from_pretrained(tiny_model_dir)
    assert rope_settings(v5.mllm_config.text_config) == rope_settings(v4.mllm_config.text_config)
    assert v5.to_dict() == v4.to_dict()
