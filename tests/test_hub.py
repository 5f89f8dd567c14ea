"""Reaching the hub: a machine that cannot reach it falls back (SAM 2) or says how to get the weights (GAR)
at once, instead of after huggingface_hub's retries: one connection attempt, counted, not timed."""

from __future__ import annotations

import socket

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


@pytest.fixture()
def connections(monkeypatch):
    """Every TCP connection attempted to the closed endpoint (by any client: the probe or a download)."""
    attempts: list[tuple[str, int]] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        if isinstance(address, tuple) and address[1] == 9:
            attempts.append((str(address[0]), int(address[1])))
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


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


def test_sam2_auto_falls_back_at_once_when_the_hub_cannot_be_reached(closed_hub, connections):
    from garvideo.trackers import resolve_sam2

    res = resolve_sam2(device="cpu")
    assert res.checkpoint is None and "cannot be reached" in res.reason
    assert connections == [("127.0.0.1", 9)]  # the one probe; no download, so no retries with back-off


def test_gar_weights_missing_says_how_to_get_them_at_once(closed_hub, connections):
    from garvideo.model.loading import resolve_model_dir

    with pytest.raises(ModelUnavailableError, match="hf download .*cannot be reached"):
        resolve_model_dir("someone/not-cached-model")
    assert connections == [("127.0.0.1", 9)]
