"""The command line's manners: -v anywhere, usage errors in one line, no third-party chatter on a
successful run, Ctrl-C says what stopped, and the web demo's error toasts and run folders."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from garvideo.cli import main, split_verbosity


def _run(argv, capfd) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return int(exc.value.code or 0), out, err


def test_split_verbosity_anywhere():
    assert split_verbosity(["describe", "a.mp4", "-vv", "-m", "x.png", "-v"]) == (
        ["describe", "a.mp4", "-m", "x.png"],
        3,
    )
    assert split_verbosity(["-v", "ask", "--verbose", "--", "-v"]) == (["ask", "--", "-v"], 2)


@pytest.mark.parametrize("flag", ["-v", "-vv", "--verbose"])
def test_verbose_after_the_subcommand(flag, capfd, sample_clip, tmp_path):
    missing = tmp_path / "missing.png"
    code, _, err = _run(["describe", sample_clip.video_path, "--mask", missing, flag], capfd)
    assert code == 2
    assert f"error: {missing}: no such mask file" in err and "No such option" not in err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["track", "CLIP", "-m", "MASK", "--frame", "-1"], "error: --frame: input should be greater than or equal to 0 (see garvideo track --help)"),
        (["describe", "CLIP", "-m", "MASK", "--num-frames", "0"], "error: --num-frames: input should be greater than or equal to 1 (see garvideo describe --help)"),
        (["describe", "CLIP"], "error: --mask: give at least one object: --mask FILE, --points 'x,y', --box 'x0,y0,x1,y1' or --text 'the dog'"),
        (["ask", "CLIP", "-m", "MASK"], "error: --question: missing (see garvideo ask --help)"),
        (["eval", "score"], "error: PREDICTIONS: missing (see garvideo eval score --help)"),
        (["describe", "CLIP", "-m", "MASK", "--zzz"], "error: --zzz: no such option (see garvideo describe --help)"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line(argv, line, capfd, sample_clip):
    argv = [
        sample_clip.video_path if a == "CLIP" else sample_clip.prompt_mask if a == "MASK" else a for a in argv
    ]
    code, out, err = _run(argv, capfd)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [line]


def test_failing_options_are_checked_before_the_model(capfd, sample_clip, tmp_path, monkeypatch):
    """A bad option is reported even when the model (given as a missing folder) would fail first: the
    model is never loaded and nothing is tracked (both are counted)."""
    import garvideo.model
    import garvideo.pipeline.clip

    calls: list[str] = []
    real_load, real_track = garvideo.model.load_gar, garvideo.pipeline.clip.track_keyframes
    # the facade takes load_gar from the package root (lazy: the name is cached there once looked up)
    monkeypatch.setattr(garvideo.model, "load_gar", lambda *a, **k: calls.append("load") or real_load(*a, **k))
    monkeypatch.setattr(
        garvideo.pipeline.clip, "track_keyframes", lambda *a, **k: calls.append("track") or real_track(*a, **k)
    )
    base = ["ask", sample_clip.video_path, "-m", sample_clip.object_masks[0], "-q", "What is <object0>?"]
    base += ["--model", tmp_path / "no-model"]
    for extra, name in (
        (["--tracker", "foo"], "--tracker"),
        (["--device", "cuda:7"], "--device"),
        (["--dtype", "fp16"], "--dtype"),
        (["-q", "Is <object1> near?"], "--question"),
        (["--option", "", "--option", "b"], "--option"),
    ):
        code, _, err = _run(base + extra, capfd)
        assert code == 2 and err.startswith(f"error: {name}: "), (extra, err)
        assert calls == [], (extra, calls)  # no model, no tracking
    code, _, err = _run(base, capfd)  # the counters do count: the good command gets to the model
    assert code == 2 and "no-model" in err and calls == ["load"], (err, calls)


@pytest.mark.slow
def test_successful_describe_prints_no_warnings(sample_clip, tiny_model_dir):
    # a separate process: pytest's own warning capture would hide what a user sees
    proc = subprocess.run(
        [sys.executable, "-c", "from garvideo.cli import main; main()",
         "describe", str(sample_clip.video_path), "-m", str(sample_clip.prompt_mask), "--model", str(tiny_model_dir),
         "--tracker", "static", "-k", "2", "--max-new-tokens", "3", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no FutureWarning, no transformers / FFmpeg lines
    assert json.loads(proc.stdout)["frames"]


def test_ctrl_c_during_track_says_what_stopped(capfd, sample_clip, tmp_path):
    long_clip = tmp_path / "long"
    long_clip.mkdir()
    frames = sorted(sample_clip.frames_dir.iterdir())
    for i in range(40 * len(frames)):  # a long clip made of links to the sample frames
        (long_clip / f"{i:05d}.png").symlink_to(frames[i % len(frames)])
    signal.setitimer(signal.ITIMER_REAL, 1.5)
    previous = signal.signal(signal.SIGALRM, lambda *a: signal.raise_signal(signal.SIGINT))
    try:
        code, _out, err = _run(
            ["track", long_clip, "-m", sample_clip.prompt_mask, "--tracker", "flow", "--out", tmp_path / "m"],
            capfd,
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert code == 130
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("interrupted: "), err
    assert "tracking stopped" in lines[-1] or "rerun" in lines[-1]


class _InterruptedTeardown:
    """Stands in for a native object whose teardown a Ctrl-C interrupts."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


def test_ctrl_c_during_decord_teardown_is_not_swallowed(sample_clip):
    pytest.importorskip("decord")
    from garvideo.video import open_video

    vid = open_video(sample_clip.video_path, backend="decord")
    assert vid.frame(3).shape == (sample_clip.height, sample_clip.width, 3)
    real = vid._reader
    vid._reader = _InterruptedTeardown()
    with pytest.raises(KeyboardInterrupt):
        vid.close()
    del real


# -- the web demo ---------------------------------------------------------------------------------------
def test_web_toasts_show_no_temp_paths_or_flags():
    pytest.importorskip("gradio")
    from garvideo.demos.web import toast_message
    from garvideo.errors import InputError

    exc = InputError(
        "/tmp/gradio/4f1e2a/dog.png",
        "mask is 10x10 but the video frames are 20x20 (pass --resize-masks to resize it)",
    )
    assert toast_message(exc) == "dog.png: mask is 10x10 but the video frames are 20x20"
    exc = InputError(
        "/tmp/gradio/77/clip.mp4", "unreadable (decord: Error reading /tmp/gradio/77/clip.mp4...)"
    )
    assert toast_message(exc) == "clip.mp4: unreadable (decord: Error reading clip.mp4...)"
    assert toast_message(InputError("question", "refers to <object1>")) == "question: refers to <object1>"
    assert toast_message(InputError("num_frames", "must be >= 1, got 0")) == "keyframes: must be >= 1, got 0"


@pytest.mark.slow
def test_web_runs_clean_up_and_bad_input_keeps_the_last_result(tiny_model_dir, sample_clip, tmp_path):
    pytest.importorskip("gradio")
    from garvideo.demos._common import demo_options
    from garvideo.demos.web import WebDemo
    from garvideo.errors import InputError

    demo = WebDemo(demo_options(model=str(tiny_model_dir), tracker="static", num_frames=1, max_new_tokens=2))
    workdir = demo.workdir
    state = demo.upload_mask(demo.open_clip(str(sample_clip.video_path)), str(sample_clip.object_masks[0]), 0)
    for _ in range(3):
        updates = list(demo.run(state, "describe"))
        assert updates[-1].done
    runs = sorted(p.name for p in workdir.iterdir())
    assert runs == ["run0002", "run0003"]  # older run folders are deleted
    with pytest.raises(InputError, match="object1"):
        demo.check_run(state, "ask", "Is <object1> here?", [])
    with pytest.raises(InputError):
        list(demo.run(state, "ask", "Is <object1> here?"))
    assert sorted(p.name for p in workdir.iterdir()) == runs  # the last result is still there
    demo.close()
    assert not workdir.exists()
    assert np.isfinite(state.fps)
