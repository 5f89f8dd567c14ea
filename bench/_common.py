"""What the bench scripts share: paths, GAR-1B's architecture with random weights, peak RSS, results JSON.

Imported by the scripts as ``_common`` (``python bench/<script>.py`` puts ``bench/`` on ``sys.path``).

GAR-1B's shape (no download; the cost of a forward pass does not depend on the weights) comes from
:func:`garvideo.model.configuration.gar_config_dict`. GAR-1B was trained with at most 16 tiles
(``configs/gar_1b.py``).
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


def random_model(config: Any, dtype: Any, device: Any) -> Any:
    """GarModel with parameters drawn from N(0, 0.02) (norm weights 1), built without a full init pass.

    The parameters are drawn on ``device`` (a GPU draws GAR-8B's in seconds; the CPU's stream and a
    GPU's differ, which does not matter for timing)."""
    import torch
    from torch import nn

    from garvideo.model import GarModel
    from garvideo.model.modeling import _parameters_on_meta

    device = torch.device(device)
    with _parameters_on_meta():
        model = GarModel(config)
    gen = torch.Generator(device=device).manual_seed(0)
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None or p.device.type != "meta":
                continue
            t = torch.empty(p.shape, dtype=torch.float32, device=device)
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
    from garvideo.model.configuration import gar_config_dict

    return GarConfig.from_dict(gar_config_dict())


def gar_8b_config() -> Any:
    """GAR-8B's architecture as a :class:`garvideo.model.GarConfig` (for timing with random weights).

    PerceptionLM-8B = PE-Core-G/14 at 448 truncated to 47 layers of width 1536 (transformers'
    ``convert_perception_lm_weights_to_hf.py`` maps 47 layers × 1536 to ``vit_pe_core_gigantic_patch14_448``:
    16 heads, MLP 8960, no class token) and Llama-3.1-8B (4096 wide, MLP 14336, 32 layers, 32 heads, 8 KV
    heads of 128, untied output head; its ``config.json``), GAR's vocabulary of 128262. Same 256 tokens
    per 448×448 tile as GAR-1B (32×32 patches, 2×2 pooling).
    """
    from garvideo.model import GarConfig
    from garvideo.model.configuration import gar_config_dict

    d = gar_config_dict(
        vision_width=1536,
        vision_depth=47,
        vision_heads=16,
        hidden_size=4096,
        intermediate_size=14336,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
    )
    mllm = d["mllm_config"]
    mllm["vision_config"]["architecture"] = "vit_pe_core_gigantic_patch14_448"
    mllm["vision_use_cls_token"] = False
    mllm["text_config"]["tie_word_embeddings"] = False
    return GarConfig.from_dict(d)


def gar_bundle(config: Any, device: Any, dtype: Any, name: str, max_num_tiles: int = 16) -> Any:
    """A :class:`garvideo.model.GarBundle` of ``config``'s architecture with random weights
    (:func:`random_model`) and :func:`gar_processor`'s processor."""
    from garvideo.model import GarBundle

    model = random_model(config, dtype, device)
    return GarBundle(model=model, processor=gar_processor(max_num_tiles), name=name, folder=ROOT)


def gar_processor(max_num_tiles: int) -> Any:
    """A :class:`garvideo.model.processing.GarProcessor` with PLM's image processor (up to
    ``max_num_tiles`` tiles) and the tiny model's byte-level tokenizer with the real special-token ids."""
    from garvideo.model.processing import GarProcessor, PerceptionLMImageProcessor
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
