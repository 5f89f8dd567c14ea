"""GAR configuration: reads and writes the official ``config.json`` layout.

The official checkpoints (``HaochenWang/GAR-1B``, ``HaochenWang/GAR-8B``) store a ``GARConfig``
(``projects/grasp_any_region/hf_models/configuration_gar.py``): the PerceptionLM config under
``mllm_config`` plus ``prompt_numbers`` (5) and ``crop_tokens_ids`` (the region placeholder ids). garvideo
reads that file without ``trust_remote_code``: :class:`GarConfig` keeps the PerceptionLM part as a
transformers :class:`~transformers.PerceptionLMConfig` and the GAR fields as plain attributes.

Facts of the official layout (``GARConfig.__init__`` / ``to_dict``, ``hf_models/convert_to_hf.py``):
``mllm_config`` is the base PerceptionLM's config dict (``facebook/Perception-LM-1B`` / ``-8B``, per
``configs/gar_*.py``) with ``text_config.vocab_size = len(tokenizer)`` (128256 + 6 added tokens = 128262);
the mask patch embedding's kernel is ``img_size // ref_feat_shape`` (448 // 32 = 14) and its width
``vision_config.num_features``. The LM head is tied iff ``text_config.tie_word_embeddings`` — what
transformers 4.56 used — and :meth:`GarConfig.from_dict` makes the PerceptionLM-level flag agree
(``_normalise_tying``). Open point: the released ``config.json`` files were not available here.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, cast

from transformers import PerceptionLMConfig, PretrainedConfig

from garvideo.errors import InputError
from garvideo.model.prompts import MAX_REGIONS, REGION_TOKEN_IDS

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Hub ids of the released checkpoints.
GAR_1B_HUB_ID = "HaochenWang/GAR-1B"
GAR_8B_HUB_ID = "HaochenWang/GAR-8B"
DEFAULT_MODEL = GAR_1B_HUB_ID
CONFIG_NAME = "config.json"
#: ``config.json`` key that marks a randomly initialised model (written by ``make_tiny_model``).
RANDOM_INIT_KEY = "garvideo_random_init"


def text_config(config: PerceptionLMConfig) -> PretrainedConfig:
    """``config.text_config`` (the Llama's): a built config holds a :class:`PretrainedConfig` there, though
    transformers' annotation also allows the dict it is built from, or ``None``."""
    return cast(PretrainedConfig, config.text_config)


def vision_config(config: PerceptionLMConfig) -> PretrainedConfig:
    """``config.vision_config`` (the vision tower's), typed as :func:`text_config`."""
    return cast(PretrainedConfig, config.vision_config)


@dataclass
class GarConfig:
    """Configuration of a GAR model.

    Attributes:
        mllm_config: the PerceptionLM configuration (vision tower, projector, Llama).
        prompt_numbers: number of region prompts (5).
        crop_tokens_ids: region placeholder token ids (128004, 128005, 128008, 128010, 128011).
        extra: any other keys of ``config.json``, kept so that a saved config round-trips.
    """

    mllm_config: PerceptionLMConfig
    prompt_numbers: int = MAX_REGIONS
    crop_tokens_ids: tuple[int, ...] = REGION_TOKEN_IDS
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.crop_tokens_ids = tuple(int(t) for t in self.crop_tokens_ids)
        if len(self.crop_tokens_ids) != self.prompt_numbers:
            raise InputError(
                "config.json",
                f"crop_tokens_ids has {len(self.crop_tokens_ids)} ids for {self.prompt_numbers} prompts",
            )
        if self.prompt_numbers != MAX_REGIONS or self.crop_tokens_ids != REGION_TOKEN_IDS:
            raise InputError(
                "config.json",
                f"garvideo supports GAR with {MAX_REGIONS} prompts and placeholder ids {REGION_TOKEN_IDS}, "
                f"got {self.prompt_numbers} and {self.crop_tokens_ids}",
            )

    # -- derived sizes -------------------------------------------------------------------------------
    @property
    def vision_model_args(self) -> dict[str, Any]:
        return dict(getattr(self.mllm_config.vision_config, "model_args", None) or {})

    @property
    def vision_width(self) -> int:
        """Output channels of the mask patch embedding.

        ``GARConfig.__init__`` (``hf_models/configuration_gar.py``) takes ``vision_config.num_features`` and
        falls back to 1280; ``num_features`` is in the timm config of every PE tower and equals its width.
        garvideo reads ``num_features`` when the config has it, else the ViT's ``embed_dim`` (the width the
        embedding is added to, ``custom_forward_features``); the loader checks the shape against the weights.
        """
        num_features = getattr(self.mllm_config.vision_config, "num_features", None)
        if num_features is not None:
            return int(num_features)
        args = self.vision_model_args
        if "embed_dim" in args:
            return int(args["embed_dim"])
        return 1280  # GARConfig's fallback

    @property
    def tie_word_embeddings(self) -> bool:
        """Whether ``mllm.lm_head`` shares the input embedding: the *text* config's flag (see ``_normalise_tying``)."""
        return bool(getattr(self.mllm_config.text_config, "tie_word_embeddings", False))

    @property
    def kernel_size(self) -> tuple[int, int]:
        """Kernel = stride of the mask patch embedding: ``img_size // ref_feat_shape`` (GARConfig)."""
        args = self.vision_model_args
        try:
            img, ref = args["img_size"], args["ref_feat_shape"]
            return int(img[0]) // int(ref[0]), int(img[1]) // int(ref[1])
        except (KeyError, TypeError, IndexError):
            return 16, 16  # GARConfig's fallback

    @property
    def random_init(self) -> bool:
        """True for a model written by :func:`garvideo.model.make_tiny_model` (random weights, meaningless text).

        Marked by the key :data:`RANDOM_INIT_KEY` in ``config.json``; official checkpoints never have it.
        """
        return bool(self.extra.get(RANDOM_INIT_KEY, False))

    @property
    def hidden_size(self) -> int:
        return int(text_config(self.mllm_config).hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(text_config(self.mllm_config).vocab_size)

    # -- (de)serialisation -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: PathLike = CONFIG_NAME) -> GarConfig:
        """Build from the dict of an official ``config.json``."""
        data = copy.deepcopy(data)
        if "mllm_config" not in data:
            raise InputError(
                source, "not a GAR config (no 'mllm_config'); expected the layout of HaochenWang/GAR-1B"
            )
        mllm = data.pop("mllm_config")
        if not isinstance(mllm, dict):
            raise InputError(source, "'mllm_config' must be an object")
        mllm = dict(mllm)
        mllm.pop("model_type", None)
        vision = mllm.get("vision_config")
        if isinstance(vision, dict) and "num_classes" in vision and "num_labels" not in vision:
            # TimmWrapperConfig writes its head size as ``num_classes`` (0: no classifier). Built from
            # keyword arguments, transformers 4.56 ignores that key and falls back to 2 labels, which the
            # next save writes as ``num_classes: 2``: pass it on as ``num_labels``.
            mllm["vision_config"] = {**vision, "num_labels": int(vision["num_classes"])}
        try:
            mllm_config = PerceptionLMConfig(**mllm)
        except (TypeError, ValueError) as exc:
            raise InputError(source, f"bad mllm_config: {exc}") from exc
        _normalise_tying(mllm_config, source)
        prompt_numbers = int(data.pop("prompt_numbers", MAX_REGIONS))
        crop = tuple(data.pop("crop_tokens_ids", REGION_TOKEN_IDS))
        return cls(mllm_config=mllm_config, prompt_numbers=prompt_numbers, crop_tokens_ids=crop, extra=data)

    def to_dict(self) -> dict[str, Any]:
        """The official ``config.json`` layout (``GARConfig.to_dict``)."""
        out: dict[str, Any] = {
            "architectures": ["GARModel"],
            "auto_map": {
                "AutoConfig": "configuration_gar.GARConfig",
                "AutoModel": "modeling_gar.GARModel",
                "AutoModelForCausalLM": "modeling_gar.GARModel",
            },
            "model_type": "GAR",
            "torch_dtype": "bfloat16",
        }
        out.update({k: v for k, v in self.extra.items() if k not in ("mllm_config",)})
        mllm = v4_mllm_dict(self.mllm_config.to_dict(), vision_width=self.vision_width)
        out.update(
            {
                "mllm_config": mllm,
                "prompt_numbers": self.prompt_numbers,
                "crop_tokens_ids": list(self.crop_tokens_ids),
                "kernel_size": list(self.kernel_size),
                "patch_size_h": self.kernel_size[0],
                "patch_size_w": self.kernel_size[1],
                "mask_path_embedding_out_channels": self.vision_width,
                "model_type": "GAR",
            }
        )
        return out

    @classmethod
    def from_pretrained(cls, folder: PathLike) -> GarConfig:
        """Read ``folder/config.json``."""
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise InputError(folder, f"no {CONFIG_NAME} in the model folder")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(path, f"cannot read the config: {exc}") from exc
        return cls.from_dict(data, source=path)

    def save_pretrained(self, folder: PathLike) -> Path:
        """Write ``folder/config.json``; returns its path."""
        path = Path(folder) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_json_default) + "\n")
        return path


def _normalise_tying(mllm_config: PerceptionLMConfig, source: PathLike) -> None:
    """Make the PerceptionLM-level ``tie_word_embeddings`` equal the text config's flag.

    The official checkpoints were written with transformers 4.56.2 (``requirements.txt``), where
    ``PreTrainedModel.tie_embeddings_and_encoder_decoder`` reads the flag from
    ``config.get_text_config(decoder=True)`` — for PerceptionLM that is ``text_config`` — and ``GARModel``
    itself never ties (its ``get_output_embeddings`` is the Llama *base* model's, i.e. ``None``). The top-level
    ``mllm_config.tie_word_embeddings`` is only the 4.x ``PretrainedConfig`` default (``True``), which
    ``GARConfig.to_dict`` writes out in full; transformers 5 ties on that top-level flag instead. Left as is, a
    GAR-8B config (Llama-3.1-8B, untied head) would tie its separate ``lm_head`` to the embedding.
    """
    text_tie = bool(getattr(mllm_config.text_config, "tie_word_embeddings", False))
    top_tie = getattr(mllm_config, "tie_word_embeddings", None)
    if top_tie is not None and bool(top_tie) != text_tie:
        logger.info(
            "%s: mllm_config.tie_word_embeddings=%s but text_config.tie_word_embeddings=%s; using the text "
            "config's value, as transformers 4.56 (the official checkpoints) does",
            source,
            top_tie,
            text_tie,
        )
    mllm_config.tie_word_embeddings = text_tie


def _v4_dtype_keys(d: dict[str, Any]) -> None:
    """transformers 5 writes ``dtype``; 4.56 reads ``torch_dtype`` (and 5 still accepts it)."""
    if "dtype" in d:
        value = d.pop("dtype")
        d.setdefault("torch_dtype", value)


def v4_mllm_dict(mllm: dict[str, Any], *, vision_width: int) -> dict[str, Any]:
    """The ``mllm_config`` dict in the layout transformers 4.56 (the official code) reads.

    transformers 5's ``to_dict`` writes ``text_config.rope_parameters`` (theta and llama3 scaling in one
    dict) and ``dtype``; 4.56's ``LlamaConfig`` reads ``rope_theta`` and ``rope_scaling`` and would run
    with its defaults (theta 10000, no llama3 scaling) on the v5 keys. The vision tower also needs
    ``num_features`` (the official ``GARConfig`` sizes the mask patch embedding from it and falls back to
    1280). transformers 5 reads the v4 keys back into ``rope_parameters`` (checked by
    ``tests/test_model_layout.py``).
    """
    mllm = copy.deepcopy(mllm)
    _v4_dtype_keys(mllm)
    text = mllm.get("text_config")
    if isinstance(text, dict):
        _v4_dtype_keys(text)
        rope = text.pop("rope_parameters", None)
        if isinstance(rope, dict):
            rope = dict(rope)
            text["rope_theta"] = float(rope.pop("rope_theta", text.get("rope_theta", 10000.0)))
            text["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    vision = mllm.get("vision_config")
    if isinstance(vision, dict):
        _v4_dtype_keys(vision)
        vision.setdefault("num_features", int(vision_width))
    return mllm


def rope_settings(text_config: Any) -> dict[str, Any]:
    """A text config's rope settings as one dict, whichever way this transformers keeps them (5.x:
    ``rope_parameters``; 4.56: ``rope_theta`` and ``rope_scaling``, ``None`` for plain rope)."""
    if getattr(text_config, "rope_parameters", None) is not None:
        return dict(text_config.rope_parameters)
    scaling = getattr(text_config, "rope_scaling", None) or {"rope_type": "default"}
    return {"rope_theta": float(text_config.rope_theta), **scaling}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)


def gar_config_dict(
    *,
    vision_width: int = 1024,
    vision_depth: int = 23,
    vision_heads: int | None = None,
    hidden_size: int = 2048,
    intermediate_size: int = 8192,
    num_layers: int = 16,
    num_heads: int = 32,
    num_kv_heads: int = 8,
    head_dim: int = 64,
    vocab_size: int = 128262,
) -> dict[str, Any]:
    """A GAR ``config.json`` dict in the official layout; the defaults are GAR-1B's architecture.

    GAR-1B = PerceptionLM-1B (PE-Core-L ViT: 23 layers of width 1024 on 448×448 tiles, patch 14, layer
    scale 0.1, no post-norm; a Llama 3.2-1B-style LLM: 16 layers of width 2048, 32 heads, 8 KV heads, tied
    embeddings, llama3 rope) with GAR's vocabulary of 128262 (Llama-3's 128256 + 6 added tokens). Facts:
    PLM-1B's ``config.json`` (``text_config``), transformers' ``convert_perception_lm_weights_to_hf.py``
    (vision) and GAR's ``convert_to_hf.py`` (``vocab_size = len(tokenizer)``). Smaller sizes give the
    tiny model (:func:`garvideo.model.tiny.tiny_config_dict`).
    """
    model_args: dict[str, Any] = {
        "embed_dim": vision_width,
        "depth": vision_depth,
        "img_size": [448, 448],
        "global_pool": "",
        "use_post_transformer_norm": False,
        "init_values": 0.1,
        "ref_feat_shape": [32, 32],
    }
    if vision_heads is not None:
        model_args["num_heads"] = vision_heads
    return {
        "mllm_config": {
            "vision_config": {
                "model_type": "timm_wrapper",
                "architecture": "vit_pe_core_large_patch14_336",
                "do_pooling": False,
                "num_labels": 0,
                "model_args": model_args,
            },
            "text_config": {
                "model_type": "llama",
                "hidden_size": hidden_size,
                "intermediate_size": intermediate_size,
                "num_hidden_layers": num_layers,
                "num_attention_heads": num_heads,
                "num_key_value_heads": num_kv_heads,
                "head_dim": head_dim,
                "hidden_act": "silu",
                "max_position_embeddings": 11520,
                "rms_norm_eps": 1e-5,
                "rope_theta": 500000.0,
                "rope_scaling": {
                    "factor": 32.0,
                    "high_freq_factor": 4.0,
                    "low_freq_factor": 1.0,
                    "original_max_position_embeddings": 8192,
                    "rope_type": "llama3",
                },
                "tie_word_embeddings": True,
                "vocab_size": vocab_size,
                "bos_token_id": 128000,
                "eos_token_id": [128001, 128009],
            },
            "projector_pooling_ratio": 2,
            "vision_use_cls_token": True,
            "image_token_id": 128002,
            "video_token_id": 128003,
        },
        "prompt_numbers": MAX_REGIONS,
        "crop_tokens_ids": list(REGION_TOKEN_IDS),
    }
