"""Bad inputs through ``track``, ``describe`` and ``ask``: each gives exit 2 and exactly one line
``error: <source>: <problem>`` on stderr (file descriptor 2, so FFmpeg / decord / libjpeg output
counts too), naming the file or option at fault, and fails before tracking or loading the model
where the option alone is wrong.

The table is built from input *defects* (a bad video, a bad mask, a bad option) applied to each
command they make sense for; ``test_bad_input_table_size`` pins the number of cases.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garvideo.cli import main

COMMANDS = ("track", "describe", "ask")


@dataclass(frozen=True)
class Defect:
    """One bad input: ``args(files, command)`` gives the changed arguments; ``names`` must appear
    in the error line (the file or option at fault)."""

    name: str
    kind: str  # "video", "mask", "option", "model" or "question"
    commands: tuple[str, ...]
    names: str


@pytest.fixture(scope="module")
def files(tmp_path_factory, sample_clip):
    """Bad files, written once: ``name -> path``; plus the good clip and mask."""
    d = tmp_path_factory.mktemp("bad_inputs")
    h, w = sample_clip.height, sample_clip.width
    f: dict[str, Path] = {"clip": sample_clip.video_path, "mask": sample_clip.object_masks[0]}
    f["frames"] = sample_clip.frames_dir

    # videos
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    rng = np.random.default_rng(0)
    (d / "random.mp4").write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    data = sample_clip.video_path.read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 20])
    (d / "no_frames").mkdir()
    (d / "no_frames" / "notes.txt").write_text("no images here")
    mixed = d / "mixed"
    mixed.mkdir()
    Image.new("RGB", (w, h)).save(mixed / "00000.jpg")
    Image.new("RGB", (w // 2, h)).save(mixed / "00001.jpg")
    trunc = d / "truncated_jpeg"  # a JPEG frame folder with frame 3 cut in half
    trunc.mkdir()
    for i, src in enumerate(sorted(sample_clip.frames_dir.iterdir())[:8]):
        Image.open(src).convert("RGB").save(trunc / f"{i:05d}.jpg", quality=90)
    raw = (trunc / "00003.jpg").read_bytes()
    (trunc / "00003.jpg").write_bytes(raw[: len(raw) // 2])
    tpng = d / "truncated_png"
    shutil.copytree(sample_clip.frames_dir, tpng)
    raw = (tpng / "00005.png").read_bytes()
    (tpng / "00005.png").write_bytes(raw[: len(raw) // 2])
    f["truncated_png"] = tpng
    badpng = d / "corrupt_png"
    badpng.mkdir()
    Image.new("RGB", (w, h)).save(badpng / "00000.png")
    (badpng / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    f.update({k: d / k for k in ("empty.mp4", "text.mp4", "random.mp4", "cut.mp4", "no_frames", "mixed")})
    f["truncated_jpeg"], f["corrupt_png"] = trunc, badpng

    # masks
    def png(name: str, arr: np.ndarray, mode: str | None = None) -> None:
        Image.fromarray(arr, mode=mode).save(d / name)
        f[name] = d / name

    png("blank.png", np.zeros((h, w), np.uint8))
    png("small.png", np.full((h // 2, w // 2), 255, np.uint8))
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(photo).save(d / "photo.jpg", quality=90)
    f["photo.jpg"] = d / "photo.jpg"
    (d / "text.png").write_text("not an image")
    f["text.png"] = d / "text.png"
    npys = {
        "strings.npy": np.array([["a", "b"], ["c", "d"]]),
        "four_d.npy": np.ones((1, 1, h, w), bool),
        "nan.npy": np.full((h, w), np.nan, np.float32),
        "negative.npy": -np.ones((h, w), np.int32),
        "small.npy": np.ones((4, 4), bool),
        "blank.npy": np.zeros((h, w), bool),
    }
    for name, arr in npys.items():
        np.save(d / name, arr)
        f[name] = d / name
    (d / "object.npy").write_bytes(b"\x93NUMPY\x01\x00" + b"x" * 40)
    f["object.npy"] = d / "object.npy"
    rles = {
        "not_json.json": "{not json",
        "empty_list.json": "[]",
        "no_counts.json": json.dumps({"size": [h, w]}),
        "few_counts.json": json.dumps({"size": [h, w], "counts": [100, 1500]}),
        "many_counts.json": json.dumps({"size": [h, w], "counts": [h * w, 10]}),
        "few_counts_str.json": json.dumps({"size": [h, w], "counts": "T3b13"}),
        "bad_chars.json": json.dumps({"size": [h, w], "counts": "\u00e9\u00e9\u00e9"}),
        "bad_size.json": json.dumps({"size": [-1, w], "counts": [0]}),
        "other_size.json": json.dumps({"size": [10, 10], "counts": [50, 50]}),
        "counts_type.json": json.dumps({"size": [h, w], "counts": 12}),
    }
    for name, text in rles.items():
        (d / name).write_text(text)
        f[name] = d / name
    (d / "maskdir").mkdir()
    f["maskdir"] = d / "maskdir"
    f["missing.png"] = d / "missing.png"
    f["missing.mp4"] = d / "missing.mp4"

    # models
    def model_dir(name: str, weights: bytes | None) -> None:
        m = d / name
        m.mkdir()
        if weights is not None:
            (m / "model.safetensors").write_bytes(weights)
        f[name] = m

    from garvideo.model import make_tiny_model

    tiny = Path(make_tiny_model(d / "tiny", seed=0))
    f["tiny"] = tiny
    good = (tiny / "model.safetensors").read_bytes()
    for name, weights in (("cut_model", good[: len(good) // 2]), ("random_model", photo.tobytes()[:4096])):
        m = d / name
        shutil.copytree(tiny, m)
        (m / "model.safetensors").write_bytes(weights)
        f[name] = m
    model_dir("empty_model", None)
    (d / "a_file").write_text("x")
    f["a_file"] = d / "a_file"
    return f


V, M, O, Q, MD = "video", "mask", "option", "question", "model"
ALL, UND = COMMANDS, ("describe", "ask")
VIDEO_DEFECTS = [
    ("missing.mp4", "missing.mp4"),
    ("empty.mp4", "empty.mp4"),
    ("text.mp4", "text.mp4"),
    ("random.mp4", "random.mp4"),
    ("cut.mp4", "cut.mp4"),
    ("no_frames", "no_frames"),
    ("mixed", "mixed"),
    ("truncated_jpeg", "00003.jpg"),
    ("truncated_png", "00005.png"),
    ("corrupt_png", "00001.png"),
]
MASK_DEFECTS = [
    ("missing.png", "missing.png"),
    ("blank.png", "blank.png"),
    ("small.png", "small.png"),
    ("photo.jpg", "photo.jpg"),
    ("text.png", "text.png"),
    ("strings.npy", "strings.npy"),
    ("four_d.npy", "four_d.npy"),
    ("nan.npy", "nan.npy"),
    ("negative.npy", "negative.npy"),
    ("small.npy", "small.npy"),
    ("blank.npy", "blank.npy"),
    ("object.npy", "object.npy"),
    ("not_json.json", "not_json.json"),
    ("empty_list.json", "empty_list.json"),
    ("no_counts.json", "no_counts.json"),
    ("few_counts.json", "few_counts.json"),
    ("many_counts.json", "many_counts.json"),
    ("few_counts_str.json", "few_counts_str.json"),
    ("bad_chars.json", "bad_chars.json"),
    ("bad_size.json", "bad_size.json"),
    ("other_size.json", "other_size.json"),
    ("counts_type.json", "counts_type.json"),
    ("maskdir", "maskdir"),
]
# option defects: (name, commands, extra args, what the line names)
OPTION_DEFECTS = [
    ("frame-negative", ALL, ["--frame", "-1"], "--frame"),
    ("frame-beyond", ALL, ["--frame", "9999"], "--frame"),
    ("frame-text", ALL, ["--frame", "x"], "--frame"),
    ("tracker-unknown", ALL, ["--tracker", "foo"], "--tracker"),
    ("device-cuda", ALL, ["--device", "cuda"], "--device"),
    ("device-bogus", ALL, ["--device", "tpu9"], "--device"),
    ("unknown-option", ALL, ["--bogus"], "--bogus"),
    ("option-without-value", ALL, ["--tracker"], "--tracker"),
    ("k-zero", UND, ["--num-frames", "0"], "--num-frames"),
    ("k-text", UND, ["--num-frames", "many"], "--num-frames"),
    ("dtype-fp16", UND, ["--dtype", "fp16"], "--dtype"),
    ("dtype-bogus", UND, ["--dtype", "int3"], "--dtype"),
    ("roi-mode", UND, ["--roi-mode", "sideways"], "--roi-mode"),
    ("keyframes", UND, ["--keyframes", "random"], "--keyframes"),
    ("max-new-tokens-zero", UND, ["--max-new-tokens", "0"], "--max-new-tokens"),
    ("six-objects", UND, ["--mask", "MASK"] * 5, "--mask"),
    ("track-out-is-file", ("track",), ["--out", "a_file"], "a_file"),
    ("track-nothing-to-write", ("track",), ["--no-out"], "--out"),
]
QUESTION_DEFECTS = [
    ("missing-question", ["--no-question"], "--question"),
    ("empty-question", ["--question", ""], "--question"),
    ("blank-question", ["--question", "   "], "--question"),
    ("object1-with-one-mask", ["--question", "Is <object1> red?"], "--question"),
    ("object9", ["--question", "Where is <object9>?"], "--question"),
    ("empty-option", ["--option", "", "--option", "no"], "--option"),
    ("blank-option", ["--option", "yes", "--option", "  "], "--option"),
    ("one-option", ["--option", "yes"], "--option"),
    ("27-options", [a for i in range(27) for a in ("--option", f"o{i}")], "--option"),
]
MODEL_DEFECTS = [
    ("cut_model", "model.safetensors"),
    ("random_model", "model.safetensors"),
    ("empty_model", "empty_model"),
    ("a_file", "a_file"),
]
SLOW_DEFECTS = [("long-question", ["--question", "why " * 32_000], "--question")]  # loads the model


def _cases() -> list[tuple[str, str, str, object]]:
    cases: list[tuple[str, str, str, object]] = []
    for cmd in COMMANDS:
        cases += [(f"{cmd}:video:{n}", cmd, V, (n, names)) for n, names in VIDEO_DEFECTS]
        cases += [(f"{cmd}:mask:{n}", cmd, M, (n, names)) for n, names in MASK_DEFECTS]
        cases += [
            (f"{cmd}:option:{n}", cmd, O, (a, names)) for n, cmds, a, names in OPTION_DEFECTS if cmd in cmds
        ]
    cases += [(f"ask:question:{n}", "ask", Q, (a, names)) for n, a, names in QUESTION_DEFECTS]
    for cmd in UND:
        cases += [(f"{cmd}:model:{n}", cmd, MD, (n, names)) for n, names in MODEL_DEFECTS]
    cases += [(f"ask:question:{n}", "ask", Q, (a, names)) for n, a, names in SLOW_DEFECTS]
    return cases


CASES = _cases()


def _argv(files, cmd: str, kind: str, spec, tmp_path: Path) -> list[str]:
    video, mask, model = files["clip"], files["mask"], files["tiny"]
    extra: list[str] = []
    question = ["--question", "What is <object0> doing?"]
    out = ["--out", str(tmp_path / "masks")]
    if kind == V:
        video = files[spec[0]]
    elif kind == M:
        mask = files[spec[0]]
    elif kind == MD:
        model = files[spec[0]]
    elif kind in (O, Q):
        args = list(spec[0])
        if "--no-question" in args:
            args.remove("--no-question")
            question = []
        if "--no-out" in args:
            args.remove("--no-out")
            out = []
        if "--out" in args:
            i = args.index("--out")
            args[i + 1] = str(files[args[i + 1]])
            out = []
        args = [str(mask) if a == "MASK" else a for a in args]
        extra = args
    argv = [cmd, str(video), "--mask", str(mask), "--tracker", "static"]
    if cmd == "track":
        argv += out
    else:
        argv += ["--model", str(model), "-k", "1", "--max-new-tokens", "2"]
        if cmd == "ask":
            argv += question
    # the option under test goes last so it overrides a default given above (click: last one wins)
    return argv + extra


def _run(argv, capfd) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capfd.readouterr()
    return int(exc.value.code or 0), out, err


def test_bad_input_table_size():
    assert len(CASES) == 159


@pytest.mark.parametrize(("case", "cmd", "kind", "spec"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clean_line(case, cmd, kind, spec, files, tmp_path, capfd):
    argv = _argv(files, cmd, kind, spec, tmp_path)
    code, out, err = _run(argv, capfd)
    lines = err.strip().splitlines()
    assert code == 2, (case, code, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, err[-2000:])
    assert spec[1] in lines[0], (case, lines[0])
    assert "Traceback" not in err and out == ""
