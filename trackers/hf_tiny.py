"""Tiny, randomly initialised SAM 3 (concept detector + tracker) and EdgeTAM folders, for tests and smoke runs.

Same architectures as the released checkpoints (transformers' ``Sam3VideoModel`` = ``Sam3Model`` detector +
``Sam3TrackerVideoModel`` tracker; ``EdgeTamVideoModel`` with its RepViT-M1 timm backbone), narrow and shallow,
written in the layout ``from_pretrained`` loads:

* SAM 3: one folder as ``facebook/sam3`` has it (a ``sam3_video`` config with ``detector_config`` and
  ``tracker_config``); ``Sam3Model.from_pretrained`` and ``Sam3TrackerVideoModel.from_pretrained`` both load it
  (each takes its part), ``Sam3Processor`` / ``Sam3TrackerVideoProcessor`` read its processor files. The text
  tokenizer is a CLIP BPE tokenizer built here from a small vocabulary (lower-case letters, digits and a few
  signs, each alone and as a word end ``</w>``, plus CLIP's ``<|startoftext|>`` / ``<|endoftext|>``): no download.
* EdgeTAM: an ``edgetam_video`` config and a ``Sam2VideoProcessor`` (the processor transformers pairs with it).

Images are 112 (SAM 3, 14-pixel patches: an 8x8 grid as 1008 gives 72x72) and 128 pixels (EdgeTAM). Outputs
are meaningless; the folders exist so that the whole text path and both trackers run offline.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Union

from garvideo.trackers.hf_video import require_classes

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

SAM3_TINY_SIZE = 112
EDGETAM_TINY_SIZE = 128
# The characters of the tiny CLIP vocabulary (CLIP lower-cases its input first).
# A short memory window (the released models read 7 spatial memories and 16 object pointers), so that tests
# cover clips longer than the window in a few frames.
TINY_WINDOW: dict[str, Any] = {"num_maskmem": 3, "max_object_pointers_in_encoder": 5}
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,'!?-"


def build_tiny_clip_tokenizer() -> Any:
    """A CLIP BPE tokenizer (``CLIPTokenizer``) over a tiny vocabulary, with CLIP's special tokens."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _CHARS:
        vocab[ch] = len(vocab)
    for ch in _CHARS:
        vocab[ch + "</w>"] = len(vocab)
    # A few merges, so that frequent words are one token (as in CLIP's real merges).
    merges: list[tuple[str, str]] = []
    for word in ("the", "car", "dog", "swan", "red"):
        cur = word[0]
        for i, nxt in enumerate(word[1:], 1):
            nxt_tok = nxt + ("</w>" if i == len(word) - 1 else "")
            merges.append((cur, nxt_tok))
            cur = cur + nxt_tok
            vocab.setdefault(cur, len(vocab))
    # merges as (a, b) pairs: transformers 5 takes them (its hint says str / list[str]); the saved files stay as before
    return CLIPTokenizer(vocab=vocab, merges=merges)  # type: ignore[arg-type]


def tiny_sam3_config() -> Any:
    """The ``Sam3VideoConfig`` of the tiny SAM 3 (detector + tracker share one tiny ViT shape)."""
    import transformers as tf

    s = SAM3_TINY_SIZE
    grid = s // 14
    vit = {
        "model_type": "sam3_vit_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": s,
        "patch_size": 14,
        "window_size": grid // 2,
        "global_attn_indexes": [1],
        "pretrain_image_size": s // 2,
    }
    # The trackers' memory attention reads 64-channel memories (kv_in_dim=64 is fixed in transformers) and
    # stacks object pointers right only when they are wider than the memories (they are split into 64-wide
    # pieces), and SAM 3's tracker reuses the detector's vision neck: every feature width is 128.
    vision = {
        "backbone_config": vit,
        "fpn_hidden_size": 128,
        "backbone_feature_sizes": [[grid * 4] * 2, [grid * 2] * 2, [grid] * 2],
    }
    tok = build_tiny_clip_tokenizer()
    detector = tf.Sam3Config(
        vision_config=vision,
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "projection_dim": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        geometry_encoder_config={
            "hidden_size": 128,
            "num_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        detr_encoder_config={
            "hidden_size": 128,
            "num_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        detr_decoder_config={
            "hidden_size": 128,
            "num_layers": 1,
            "num_queries": 8,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        mask_decoder_config={"hidden_size": 128, "num_attention_heads": 2},
    )
    # image_size: read by the config's __init__ (its **kwargs), not in transformers' typed signature
    sizes: dict[str, Any] = {"image_size": s}
    tracker = tf.Sam3TrackerVideoConfig(
        vision_config=vision,
        **sizes,
        prompt_encoder_config={"hidden_size": 128, "image_size": s, "patch_size": 14},
        mask_decoder_config={
            "hidden_size": 128,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
        memory_attention_hidden_size=128,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[grid, grid],
        memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=64,
        **TINY_WINDOW,
    )
    return tf.Sam3VideoConfig(detector_config=detector.to_dict(), tracker_config=tracker.to_dict())


def tiny_edgetam_config() -> Any:
    """The ``EdgeTamVideoConfig`` of the tiny EdgeTAM (the real RepViT-M1 backbone, small heads)."""
    import transformers as tf

    s = EDGETAM_TINY_SIZE
    # EdgeTAM's backbone is timm's RepViT-M1 (features at strides 4..32: 48, 96, 192, 384 channels), named
    # explicitly: the default sub-config of EdgeTamVisionConfig misspells the architecture key.
    backbone = tf.TimmWrapperConfig(
        architecture="repvit_m1",
        model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]},
    )
    vision = tf.EdgeTamVisionConfig(
        backbone_config=backbone,
        backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2],
        fpn_hidden_size=128,
    )
    return tf.EdgeTamVideoConfig(
        vision_config=vision.to_dict(),
        image_size=s,
        prompt_encoder_config={"hidden_size": 128, "image_size": s, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": 128,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
        memory_attention_hidden_size=128,
        memory_attention_num_layers=1,
        memory_attention_mlp_hidden_size=64,
        memory_attention_rope_feat_sizes=[s // 16, s // 16],
        memory_attention_rope_k_sizes=[4, 4],
        perceiver_resampler_num_latents=16,
        perceiver_resampler_num_latents_2d=16,
        perceiver_resampler_hidden_size=64,
        perceiver_resampler_mlp_intermediate_size=64,
        perceiver_resampler_attention_head_dim=64,
        perceiver_resampler_num_layers=1,
        memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=64,
        **TINY_WINDOW,
    )


#: Std of the random matrices: transformers' 0.02 leaves every logit of a tiny random tracker near 0 (empty masks,
#: presence 0.5 everywhere), which would hide a wrong mask or a wrong memory in tests; 0.1 gives varied masks.
WEIGHT_STD = 0.1

#: Bias of the trackers' object-presence head: a random head scores objects absent about half the time, which
#: empties the masks of whole passes; a positive bias keeps objects present, so their masks are compared.
PRESENCE_BIAS = 3.0


def _seeded(model: Any, seed: int) -> Any:
    """garvideo's seeded initialisation (same tensors under every transformers release), matrices at
    :data:`WEIGHT_STD`."""
    import torch  # torch and transformers only when a tiny model is made

    from garvideo.model.tiny import _seeded_init

    with torch.no_grad():
        _seeded_init(model, int(seed))
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.mul_(WEIGHT_STD / 0.02)
            elif name.endswith("pred_obj_score_head.proj_out.bias"):
                p.fill_(PRESENCE_BIAS)
    return model.eval()


def make_tiny_sam3(out_dir: PathLike, seed: int = 0) -> Path:
    """Write the tiny random SAM 3 (detector + tracker + processors) to ``out_dir``; returns the folder.

    Raises:
        ModelUnavailableError: the installed transformers has no SAM 3 (see :func:`require_classes`).
    """
    import torch

    tf = require_classes("sam3")
    out = Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        model = tf.Sam3VideoModel(tiny_sam3_config())
    _seeded(model, seed)
    model.save_pretrained(out)
    s = SAM3_TINY_SIZE
    half = [0.5, 0.5, 0.5]
    image_processor = tf.Sam3ImageProcessor(
        size={"height": s, "width": s},
        mask_size={"height": s // 4, "width": s // 4},
        image_mean=half,
        image_std=half,
    )
    video_processor = tf.Sam2VideoVideoProcessor(
        size={"height": s, "width": s}, image_mean=half, image_std=half
    )
    tf.Sam3VideoProcessor(image_processor, video_processor, build_tiny_clip_tokenizer()).save_pretrained(out)
    _mark_random(out)
    logger.info("wrote a tiny SAM 3 to %s", out)
    return out


def make_tiny_edgetam(out_dir: PathLike, seed: int = 0) -> Path:
    """Write the tiny random EdgeTAM (model + ``Sam2VideoProcessor``) to ``out_dir``; returns the folder."""
    import torch

    tf = require_classes("edgetam")
    out = Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        model = tf.EdgeTamVideoModel(tiny_edgetam_config())
    _seeded(model, seed)
    model.save_pretrained(out)
    s = EDGETAM_TINY_SIZE
    image_processor = tf.Sam2ImageProcessor(
        size={"height": s, "width": s}, mask_size={"height": s // 4, "width": s // 4}
    )
    video_processor = tf.Sam2VideoVideoProcessor(size={"height": s, "width": s})
    tf.Sam2VideoProcessor(image_processor, video_processor).save_pretrained(out)
    _mark_random(out)
    logger.info("wrote a tiny EdgeTAM to %s", out)
    return out


def _mark_random(folder: Path) -> None:
    """Record in config.json that the weights are random (as the tiny GAR does)."""
    from garvideo.model.configuration import RANDOM_INIT_KEY  # imports transformers: only when writing

    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg[RANDOM_INIT_KEY] = True
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
