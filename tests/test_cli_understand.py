"""``garvideo describe`` / ``garvideo ask`` end to end through the CLI (tiny GAR, flow tracker)."""

from __future__ import annotations

import json

import pytest


def _tiny(model_dir, new_tokens: int) -> list:
    """The options every run on the tiny GAR shares: the flow tracker, the model, a short answer."""
    return ["--tracker", "flow", "--model", model_dir, "--max-new-tokens", str(new_tokens)]


def test_describe_json(run_cli, tiny_model_dir, sample_clip, tmp_path) -> None:
    overlay = tmp_path / "describe.mp4"
    masks = ["--mask", sample_clip.object_masks[0], "--mask", sample_clip.object_masks[1]]
    code, out, err = run_cli(
        "describe", sample_clip.video_path, *masks, "--frame", "0", "--num-frames", "2",
        *_tiny(tiny_model_dir, 3), "--json", "--overlay", overlay,
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert set(data) >= {"text", "frames", "objects", "tracker", "model", "timings", "notes"}
    assert data["frames"] == [12, 35]
    assert data["tracker"] == "flow" and data["model"] == str(tiny_model_dir)
    assert [o["id"] for o in data["objects"]] == ["object0", "object1"]
    assert {"decode", "tracking", "vision", "prefill", "generation", "total"} <= set(data["timings"])
    assert overlay.is_file() and overlay.stat().st_size > 0


def test_describe_without_weights_still_writes_overlay(run_cli, sample_clip, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing on disk
    overlay = tmp_path / "no_weights.mp4"
    code, out, err = run_cli(
        "describe", sample_clip.video_path, "--mask", sample_clip.prompt_mask,
        "--tracker", "flow", "--model", "HaochenWang/GAR-1B", "--overlay", overlay,
    )  # fmt: skip
    assert code == 2
    assert overlay.is_file() and overlay.stat().st_size > 0
    assert "error:" in err and "hf download" in err
    assert out == ""


def test_ask_multiple_choice_json(run_cli, tiny_model_dir, sample_clip) -> None:
    code, out, err = run_cli(
        "ask", sample_clip.video_path, "--mask", sample_clip.prompt_mask, "-k", "2",
        *_tiny(tiny_model_dir, 2), "--question", "What is <object0> doing to <object1>?",
        "--option", "chasing it", "--option", "ignoring it", "--json",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["question"] == "What is <object0> doing to <object1>?"
    assert data["options"] == ["chasing it", "ignoring it"]
    assert data["letter"] in (None, "A", "B")
    assert len(data["frames"]) == 2


def test_ask_bad_reference_is_a_clean_error(run_cli, tiny_model_dir, sample_clip) -> None:
    code, _out, err = run_cli(
        "ask", sample_clip.video_path, "--mask", sample_clip.object_masks[0], "-k", "1",
        "--tracker", "static", "--model", tiny_model_dir, "--question", "Is <object1> red?",
    )  # fmt: skip
    assert code == 2
    assert err.strip().startswith("error: --question:") and "<object1>" in err


def test_bad_mask_size_is_a_clean_error(run_cli, tiny_model_dir, sample_clip, tmp_path) -> None:
    import numpy as np

    from garvideo.masks import save_mask

    small = tmp_path / "small.png"
    m = np.zeros((10, 10), dtype=bool)
    m[2:5, 2:5] = True
    save_mask(small, m)
    code, _, err = run_cli("describe", sample_clip.video_path, "--mask", small, "--model", tiny_model_dir)
    assert code == 2 and "--resize-masks" in err


@pytest.mark.parametrize("command", ["describe", "ask"])
def test_help_has_an_example(run_cli, command) -> None:
    code, out, _ = run_cli(command, "--help")
    assert code == 0
    assert f"Example: garvideo {command}" in out
