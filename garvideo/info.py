"""What ``garvideo info`` reports: package versions, compute devices, checkpoints found on disk."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
from dataclasses import asdict, dataclass, field

logger = logging.getLogger(__name__)

# Distribution names, as pip knows them.
_PACKAGES = (
    "garvideo",
    "torch",
    "torchvision",
    "transformers",
    "timm",
    "sam2",
    "decord",
    "opencv-python",
    "numpy",
    "pycocotools",
)
# Hub repositories whose snapshots garvideo can use (GAR: arXiv 2510.18876; SAM 2.1: facebook/sam2.1-*).
_GAR_REPOS = ("HaochenWang/GAR-1B", "HaochenWang/GAR-8B")
_SAM2_REPO_PREFIX = "facebook/sam2"


@dataclass
class CheckpointInfo:
    kind: str  # "gar" or "sam2"
    name: str  # hub id, or the path given in an environment variable
    path: str
    source: str  # "hub-cache" or "env:<VAR>"


@dataclass
class EnvInfo:
    python: str
    platform: str
    packages: dict[str, str | None]
    devices: list[str]
    cuda_available: bool
    torch_threads: int
    checkpoints: list[CheckpointInfo] = field(default_factory=list)
    hf_offline: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def find_local_checkpoints() -> list[CheckpointInfo]:
    """Checkpoints usable without a download: the HF hub cache and the ``GARVIDEO_*`` variables."""
    found: list[CheckpointInfo] = []
    for var, var_kind in (("GARVIDEO_MODEL", "gar"), ("GARVIDEO_SAM2_CHECKPOINT", "sam2")):
        value = os.environ.get(var)
        if value and os.path.exists(value):
            found.append(CheckpointInfo(var_kind, value, os.path.abspath(value), f"env:{var}"))
    try:
        from huggingface_hub import scan_cache_dir

        cache = scan_cache_dir()
    except Exception as exc:  # noqa: BLE001 - no cache folder yet, or an unreadable one
        logger.debug("no Hugging Face cache to scan: %s", exc)
        return found
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        kind = (
            "gar"
            if repo.repo_id in _GAR_REPOS
            else "sam2"
            if repo.repo_id.startswith(_SAM2_REPO_PREFIX)
            else None
        )
        if kind:
            found.append(CheckpointInfo(kind, repo.repo_id, str(repo.repo_path), "hub-cache"))
    return found


def collect_info() -> EnvInfo:
    """Gather versions, devices and local checkpoints (imports torch; no network)."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return EnvInfo(
        python=platform.python_version(),
        platform=platform.platform(),
        packages={name: _version(name) for name in _PACKAGES},
        devices=devices,
        cuda_available=torch.cuda.is_available(),
        torch_threads=torch.get_num_threads(),
        checkpoints=find_local_checkpoints(),
        hf_offline=os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"),
    )
