"""Reaching the Hugging Face hub: whether it is switched off, or cannot be reached from this machine.

Both downloads garvideo makes on its own (GAR weights, :func:`garvideo.model.loading.resolve_model_dir`;
the default SAM 2.1 checkpoint, :func:`garvideo.trackers.resolve_sam2`) ask here first, so that a
machine without a network falls back (or says how to get the weights) at once instead of after
``huggingface_hub``'s retries with back-off (about 25 s per file).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

__all__ = ["hub_offline", "hub_unreachable"]

#: Seconds a TCP connection to the hub may take before the hub counts as unreachable.
CONNECT_TIMEOUT = 3.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_offline() -> bool:
    """Whether the hub is switched off (``HF_HUB_OFFLINE``), read now, not at import."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    try:
        from huggingface_hub import constants
    except ImportError:
        return True
    return bool(constants.HF_HUB_OFFLINE)


def hub_unreachable(timeout: float = CONNECT_TIMEOUT) -> str | None:
    """``None`` when the hub's host (``$HF_ENDPOINT``, default huggingface.co) accepts a TCP connection
    within ``timeout`` seconds, else why not (one line). Behind a proxy (``HTTPS_PROXY`` …) the host is
    not probed: the download itself decides."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"the hub ({host}) cannot be reached: {exc.strerror or type(exc).__name__}"
