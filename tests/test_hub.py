"""Reaching the hub: a machine that cannot reach it falls back (SAM 2) or says how to get the weights (GAR)
at once, instead of after huggingface_hub's retries."""

from __future__ import annotations

import time

import pytest

from garvideo.errors import ModelUnavailableError
from garvideo.hub import hub_offline, hub_unreachable


@pytest.fixture()
def closed_hub(monkeypatch, tmp_path):
    """Online by the environment, but the hub endpoint is a closed loopback port (connection refused)."""
    import huggingface_hub.constants

    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "GARVIDEO_SAM2_CHECKPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens there
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))


def test_offline_flag_is_read_now(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub_offline()


def test_a_closed_endpoint_is_unreachable_and_a_proxy_is_not_probed(closed_hub, monkeypatch):
    reason = hub_unreachable()
    assert reason is not None and "127.0.0.1" in reason
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert hub_unreachable() is None  # behind a proxy the download itself decides


def test_sam2_auto_falls_back_at_once_when_the_hub_cannot_be_reached(closed_hub):
    from garvideo.trackers import resolve_sam2

    t0 = time.perf_counter()
    res = resolve_sam2(device="cpu")
    assert res.checkpoint is None and "cannot be reached" in res.reason
    assert time.perf_counter() - t0 < 10  # no retries with back-off


def test_gar_weights_missing_says_how_to_get_them_at_once(closed_hub):
    from garvideo.model.loading import resolve_model_dir

    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="hf download .*cannot be reached"):
        resolve_model_dir("someone/not-cached-model")
    assert time.perf_counter() - t0 < 10
