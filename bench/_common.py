"""What the bench scripts share: paths, GAR-1B's architecture with random weights, peak RSS, results JSON.

Imported by the scripts as ``_common`` (``python bench/<script>.py`` puts ``bench/`` on ``sys.path``).

GAR-1B's shape (no download; the cost of a forward pass does not depend on the weights): PerceptionLM-1B
(PE-Core-L ViT, 23 layers of width 1024 on 448×448 tiles; Llama 3.2-1B-style LLM with 16 layers of width
2048, 32 heads, 8 KV heads, tied embeddings, llama3 rope) with GAR's vocabulary of 128262 and the
1024-channel mask patch embedding. Facts: PLM-1B's ``config.json`` on the hub (``text_config``) and
transformers' ``convert_perception_lm_weights_to_hf.py`` (vision: 23 layers, width 1024, image 448, patch
14, ``ls_init_value`` 0.1, no post-norm); GAR adds 6 tokens (``convert_to_hf.py``:
``vocab_size = len(tokenizer)``). GAR-1B was trained with at most 16 tiles (``configs/gar_1b.py``).
"""

from __future__ import annotations

import json
import platform
import resource
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "bench" / "results"


def gar_1b_config_dict() -> dict[str, Any]:
    """GAR-1B's ``config.json`` content that matters for the architecture (see the module docstring)."""
    return {
        "mllm_config": {
            "vision_config": {
                "model_type": "timm_wrapper",
                "architecture": "vit_pe_core_large_patch14_336",
                "do_pooling": False,
                "num_labels": 0,
                "model_args": {
                    "embed_dim": 1024,
                    "depth": 23,
                    "img_size": [448, 448],
                    "global_pool": "",
                    "use_post_transformer_norm": False,
                    "init_values": 0.1,
                    "ref_feat_shape": [32, 32],
                },
            },
            "text_config": {
                "model_type": "llama",
                "hidden_size": 2048,
                "intermediate_size": 8192,
                "num_hidden_layers": 16,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "head_dim": 64,
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
                "vocab_size": 128262,
                "bos_token_id": 128000,
                "eos_token_id": [128001, 128009],
            },
            "projector_pooling_ratio": 2,
            "vision_use_cls_token": True,
            "image_token_id": 128002,
            "video_token_id": 128003,
        },
        "prompt_numbers": 5,
        "crop_tokens_ids": [128004, 128005, 128008, 128010, 128011],
    }


def random_model(config: Any, dtype: Any, device: Any) -> Any:
    """GarModel with parameters drawn from N(0, 0.02) (norm weights 1), built without a full init pass."""
    import torch
    from torch import nn

    from garvideo.model import GarModel
    from garvideo.model.modeling import _parameters_on_meta

    with _parameters_on_meta():
        model = GarModel(config)
    gen = torch.Generator(device="cpu").manual_seed(0)
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None or p.device.type != "meta":
                continue
            t = torch.empty(p.shape, dtype=torch.float32)
            if name == "weight" and p.dim() == 1:
                t.fill_(1.0)
            elif name == "bias" or "gamma" in name:
                t.fill_(0.0 if name == "bias" else 0.1)
            else:
                t.normal_(0.0, 0.02, generator=gen)
            module._parameters[name] = nn.Parameter(t.to(dtype), requires_grad=False)
    model = model.to(device=device, dtype=dtype)
    model.tie_weights()
    return model.eval()


def gar_1b_config() -> Any:
    """GAR-1B's :class:`garvideo.model.GarConfig`."""
    from garvideo.model import GarConfig

    return GarConfig.from_dict(gar_1b_config_dict())


def gar_processor(max_num_tiles: int) -> Any:
    """A :class:`garvideo.model.processing.GarProcessor` with PLM's image processor (up to
    ``max_num_tiles`` tiles) and the tiny model's byte-level tokenizer with the real special-token ids."""
    from transformers import PerceptionLMImageProcessor

    from garvideo.model.processing import GarProcessor
    from garvideo.model.tiny import build_tiny_tokenizer

    return GarProcessor(
        PerceptionLMImageProcessor(max_num_tiles=max_num_tiles, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        build_tiny_tokenizer(),
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (``ru_maxrss``)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


def device_name(device: Any) -> str:
    """The GPU's name for a CUDA device, else the CPU's."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def command_line() -> str:
    """How this script was run (for the results JSON)."""
    return " ".join([Path(sys.executable).name, *sys.argv])


def write_json(out: Path, payload: Any, *, key: str | None = None) -> None:
    """Write ``payload`` to ``out`` (folders made) and say so; with ``key``, store it under that key of
    the JSON object already in ``out`` (e.g. one entry per device type) instead of replacing the file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if key is not None:
        existing: dict[str, Any] = {}
        if out.is_file():
            try:
                existing = json.loads(out.read_text())
            except json.JSONDecodeError:
                existing = {}
        existing[key] = payload
        payload = existing
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


def add_torch_args(parser: Any, *, device: str, out: str) -> None:
    """``--device`` (default ``device``), ``--threads`` and ``--out`` (default ``bench/results/<out>``)."""
    parser.add_argument("--device", default=device)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--out", type=Path, default=RESULTS / out)


def torch_device(args: Any) -> Any:
    """Apply ``--threads`` and return ``--device`` as a :class:`torch.device`."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)
