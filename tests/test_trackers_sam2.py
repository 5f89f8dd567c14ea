"""The sam2 backend end to end on a tiny, randomly initialised SAM 2.1 built from the packaged config.

No checkpoint can be downloaded here: the model is composed from sam2's own
``configs/sam2.1/sam2.1_hiera_t.yaml`` with the real architecture (Hiera trunk, FPN neck, memory
attention and encoder, SAM heads), shrunk by hydra overrides (``TINY_OVERRIDES``), with random
weights. The tests check the streaming loop's behaviour, not segmentation quality.
"""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest

pytest.importorskip("sam2")
import torch

from garvideo.errors import InputError
from garvideo.eval.vos import jaccard
from garvideo.trackers import Prompt, build_tracker
from garvideo.trackers.sam2_backend import TINY_OVERRIDES, Sam2Tracker, build_sam2_model


class ToyVideo:
    """A bright square sliding right over a dark background (frames made on demand)."""

    def __init__(self, n: int = 24, h: int = 72, w: int = 96) -> None:
        self.num_frames, self.height, self.width, self.fps = n, h, w, 10.0
        self.decoded = 0

    def box(self, i: int) -> tuple[int, int, int, int]:
        x0 = 5 + (i * 2) % (self.width - 30)
        return x0, 20, x0 + 24, 44

    def mask(self, i: int) -> np.ndarray:
        m = np.zeros((self.height, self.width), bool)
        x0, y0, x1, y1 = self.box(i)
        m[y0:y1, x0:x1] = True
        return m

    def frames(self, indices):
        for i in indices:
            self.decoded += 1
            im = np.full((self.height, self.width, 3), 30, np.uint8)
            im[self.mask(i)] = (220, 180, 40)
            yield i, im


@pytest.fixture(scope="module")
def tiny_sam2():
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # restored below: the rest of the suite keeps its setting
    model = build_sam2_model(
        "configs/sam2.1/sam2.1_hiera_t.yaml", image_size=128, extra_overrides=TINY_OVERRIDES
    )
    yield Sam2Tracker(model=model, device="cpu")
    torch.set_num_threads(threads)


def test_forward_from_first_frame(tiny_sam2):
    v = ToyVideo()
    r = tiny_sam2.track(v, [Prompt(1, 0, mask=v.mask(0))])
    assert r.tracker == "sam2"
    assert r.frames == list(range(v.num_frames))
    assert r.frames_visited == v.num_frames
    # As the official predictor: the output on a mask-prompt frame is the model's own S/4 prediction
    # (the prompt mask downsampled, add_new_mask's stored pred_masks) upsampled bilinearly, not the
    # prompt itself; close to it.
    lows = {}
    trk = Sam2Tracker(model=tiny_sam2.model, device="cpu", logits_callback=lambda f, o, x: lows.setdefault(f, x))
    r2 = trk.track(v, [Prompt(1, 0, mask=v.mask(0))])
    assert lows[0].shape == (32, 32) and sorted(lows) == list(range(v.num_frames))
    up = torch.nn.functional.interpolate(
        torch.from_numpy(lows[0])[None, None], size=(v.height, v.width), mode="bilinear", align_corners=False
    )
    assert np.array_equal(r.mask(0, 1), (up[0, 0] > 0).numpy()) and np.array_equal(r2.mask(0, 1), r.mask(0, 1))
    assert not np.array_equal(v.mask(0), r.mask(0, 1))  # not the prompt mask passed through ...
    assert jaccard(v.mask(0), r.mask(0, 1)) > 0.9  # ... but close to it
    assert r.present(0, 1) and r.score(0, 1) > 0.99
    for f in r.frames:
        m = r.mask(f, 1)
        assert m.shape == (v.height, v.width) and m.dtype == bool
        assert 0.0 <= r.score(f, 1) <= 1.0
        assert r.present(f, 1) == (r.score(f, 1) > 0.5 and m.any())
    assert r.info["image_size"] == 128 and r.info["device"] == "cpu"


def test_backward_from_last_frame(tiny_sam2):
    # As the official predictor: a forward pass from the prompt (here only frame 11), then a backward
    # pass on the same state from frame 11 down.
    v = ToyVideo(n=12)
    r = tiny_sam2.track(v, [Prompt(1, 11, mask=v.mask(11))])
    assert r.frames == list(range(12))
    assert r.frames_visited == 1 + 12
    assert v.decoded == 1 + 1 + 12  # the prompt frame once more, before tracking (add_new_mask)
    assert jaccard(v.mask(11), r.mask(11, 1)) > 0.8


def test_two_objects_one_prompted_on_a_middle_frame(tiny_sam2):
    v = ToyVideo(n=16)
    other = np.zeros((v.height, v.width), bool)
    other[50:66, 60:90] = True
    r = tiny_sam2.track(v, [Prompt(1, 0, mask=v.mask(0)), Prompt(2, 8, mask=other)])
    assert r.object_ids == [1, 2]
    assert r.frames == list(range(16))
    assert jaccard(other, r.mask(8, 2)) > 0.8
    assert jaccard(v.mask(0), r.mask(0, 1)) > 0.8
    # As the official predictor: every object is tracked from the earliest prompt frame (object 2
    # on frames 0..7 before its own prompt, reading its frame-8 memory), one forward pass; the
    # backward pass from frame 0 has nothing to do.
    assert all(r.tracked(f, 2) for f in r.frames)
    assert all(r.tracked(f, 1) for f in r.frames)
    assert r.frames_visited == 16


def test_point_and_box_prompts(tiny_sam2):
    v = ToyVideo(n=6)
    x0, y0, x1, y1 = v.box(2)
    r = tiny_sam2.track(
        v,
        [
            Prompt(1, 2, points=np.array([[x0 + 5.0, y0 + 5.0], [2.0, 2.0]]), labels=np.array([1, 0])),
            Prompt(2, 2, box=(float(x0), float(y0), float(x1), float(y1))),
        ],
    )
    assert r.frames == list(range(6))
    assert r.object_ids == [1, 2]


def test_memory_bank_is_pruned_on_long_clips(tiny_sam2):
    v = ToyVideo(n=60, h=40, w=60)
    m = tiny_sam2.model
    r = tiny_sam2.track(v, [Prompt(1, 0, mask=v.mask(0))], frames=[0, 30, 59])
    assert r.frames == [0, 30, 59]  # only the requested frames are kept ...
    assert v.decoded == 60 + 1  # ... but every frame was propagated through, once (+ the prompt frame)
    window = max(m.num_maskmem + 1, m.max_obj_ptrs_in_encoder)
    assert r.info["memory_entries_max"] <= window + 1  # non-conditioning window + the prompt frame
    assert r.info["memory_entries_max"] < 30
    # Both ways from a middle frame: the forward pass also keeps the window of entries after the
    # prompt that the backward pass reads (as the official predictor's state holds them): still bounded.
    v = ToyVideo(n=80, h=40, w=60)
    r = tiny_sam2.track(v, [Prompt(1, 40, mask=v.mask(40))], frames=[0, 40, 79])
    assert r.frames == [0, 40, 79] and r.frames_visited == 40 + 41
    assert window + 1 < r.info["memory_entries_max"] <= 2 * window + 1


def test_checkpoint_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("GARVIDEO_SAM2_CHECKPOINT", raising=False)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="unreadable sam2 checkpoint"):
        build_tracker("sam2", sam2_checkpoint=str(bad), image_size=128)
    with pytest.raises(InputError, match="not found"):
        build_tracker("sam2", sam2_checkpoint=str(tmp_path / "missing.pt"))
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"foo": torch.zeros(1)}}, wrong)
    with pytest.raises(InputError, match="does not match"):
        build_tracker("sam2", sam2_checkpoint=str(wrong), sam2_config="sam2.1_hiera_t", image_size=128)
    with pytest.raises(InputError, match="unknown config"):
        build_tracker("sam2", sam2_checkpoint=str(wrong), sam2_config="hiera_xxl")
    with pytest.raises(InputError, match="multiple of 32"):
        build_tracker("sam2", sam2_checkpoint=str(wrong), image_size=100)


def test_real_checkpoint_round_trip(tiny_sam2, tmp_path):
    # A checkpoint in the official layout ({"model": state_dict}) loads back into the same config.
    ckpt = tmp_path / "tiny.pt"
    torch.save({"model": tiny_sam2.model.state_dict()}, ckpt)
    from garvideo.trackers.sam2_backend import load_sam2_checkpoint

    torch.manual_seed(1)
    other = build_sam2_model(
        "configs/sam2.1/sam2.1_hiera_t.yaml", image_size=128, extra_overrides=TINY_OVERRIDES
    )
    load_sam2_checkpoint(other, str(ckpt))
    mine, theirs = tiny_sam2.model.state_dict(), other.state_dict()
    # The same parameter names first (a missing or extra key would hide behind a zip or a loop over one side),
    # then every tensor equal, dtype and shape included.
    assert set(mine) == set(theirs), (sorted(set(mine) ^ set(theirs)))[:10]
    assert len(mine) > 100
    for k, a in mine.items():
        b = theirs[k]
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), k


def test_hub_id_offline_says_how_to_get_weights(monkeypatch):
    from garvideo.errors import ModelUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="--sam2-checkpoint"):
        build_tracker("sam2", sam2_checkpoint="facebook/sam2.1-hiera-tiny")
    monkeypatch.delenv("GARVIDEO_SAM2_CHECKPOINT", raising=False)
    with pytest.raises(ModelUnavailableError, match="flow needs no weights"):
        build_tracker("sam2")


def test_keyframes_only_mode_runs_the_model_on_kept_frames(tiny_sam2):
    v = ToyVideo(n=30)
    fast = Sam2Tracker(model=tiny_sam2.model, device="cpu", every_frame=False)
    r = fast.track(v, [Prompt(1, 15, mask=v.mask(15))], frames=[0, 10, 20, 29])
    assert r.frames == [0, 10, 20, 29]
    # forward 15 (prompt), 20, 29; backward 15, 10, 0; each pass decodes the prompt frame first
    assert v.decoded == 6 + 2
    assert r.frames_visited == 6
    assert all(r.tracked(f, 1) for f in r.frames)


# -- auto: SAM 2 resolved as GAR is (option, env, cache, download when online, flow otherwise) ----------
@pytest.fixture(scope="module")
def hiera_t_checkpoint(tmp_path_factory):
    """A full-size sam2.1_hiera_t with random weights, saved in the official layout (what the hub's
    sam2.1_hiera_tiny.pt holds, minus the training)."""
    torch.manual_seed(0)
    model = build_sam2_model("configs/sam2.1/sam2.1_hiera_t.yaml", image_size=256)
    path = tmp_path_factory.mktemp("hub") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    del model
    return path


@pytest.fixture()
def hub(monkeypatch, tmp_path, hiera_t_checkpoint):
    """Online, an empty hub cache, and ``huggingface_hub.hf_hub_download`` (the function the real path
    calls) answering from a local file; ``hub.calls`` lists the downloads asked for."""
    import huggingface_hub
    import huggingface_hub.constants

    monkeypatch.delenv("GARVIDEO_SAM2_CHECKPOINT", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("garvideo.hub.hub_unreachable", lambda timeout=3.0: None)  # "online"

    class Hub:
        calls: ClassVar[list] = []
        fail: ClassVar[Exception | None] = None

    def fake_download(repo_id, filename, **kwargs):
        Hub.calls.append((repo_id, filename))
        if Hub.fail is not None:
            raise Hub.fail
        return str(hiera_t_checkpoint)

    Hub.calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    return Hub


def test_auto_online_without_cache_downloads_the_default_sam2(hub):
    from garvideo.trackers.sam2_backend import cached_hub_checkpoint

    assert cached_hub_checkpoint() is None  # the (empty) cache is really looked up
    trk = build_tracker("auto", device="cpu", image_size=256)
    assert hub.calls == [("facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt")]  # the CPU default
    assert trk.name == "sam2" and trk.config == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert trk.selection == "auto: sam2, downloaded facebook/sam2.1-hiera-tiny (the default on cpu)"
    v = ToyVideo(n=3)
    r = trk.track(v, [Prompt(1, 0, mask=v.mask(0))])
    assert r.tracker == "sam2" and r.reason == trk.selection
    assert r.summary()["tracker_reason"] == trk.selection


def test_auto_offline_or_failed_download_falls_back_to_flow_and_says_why(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    trk = build_tracker("auto")
    assert trk.name == "flow" and hub.calls == []
    assert trk.selection.startswith("auto: flow") and "offline (HF_HUB_OFFLINE)" in trk.selection
    assert "--sam2-checkpoint" in trk.selection  # how to get SAM 2
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub.fail = ConnectionError("no route to host")
    trk = build_tracker("auto")
    assert trk.name == "flow" and hub.calls == [("facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt")]
    assert (
        "download of facebook/sam2.1-hiera-tiny failed (ConnectionError: no route to host)" in trk.selection
    )


def test_auto_prefers_option_env_and_cache_to_a_download(hub, monkeypatch, hiera_t_checkpoint):
    from garvideo.trackers import resolve_sam2
    from garvideo.trackers.sam2_backend import default_hub_checkpoint

    assert resolve_sam2("x.pt").checkpoint == "x.pt"
    monkeypatch.setenv("GARVIDEO_SAM2_CHECKPOINT", "env.pt")
    assert resolve_sam2().reason == "$GARVIDEO_SAM2_CHECKPOINT=env.pt"
    monkeypatch.delenv("GARVIDEO_SAM2_CHECKPOINT")
    monkeypatch.setattr(
        "garvideo.trackers.sam2_backend.cached_hub_checkpoint", lambda: str(hiera_t_checkpoint)
    )
    found = resolve_sam2()
    assert found.checkpoint == str(hiera_t_checkpoint) and "Hugging Face cache" in found.reason
    assert hub.calls == []  # nothing downloaded while something is on disk
    assert default_hub_checkpoint("cuda:0") == "facebook/sam2.1-hiera-large"
    assert default_hub_checkpoint("cpu") == "facebook/sam2.1-hiera-tiny"


# -- points and boxes through the real sam2 model -------------------------------------------------------
def test_points_forward_and_box_backward_from_a_middle_frame(tiny_sam2):
    v = ToyVideo(n=10)
    x0, y0, x1, y1 = v.box(5)
    pts = np.array([[x0 + 6.0, y0 + 6.0], [2.0, 2.0]])
    r = tiny_sam2.track(
        v,
        [
            Prompt(1, 0, points=np.array([[10.0, 30.0]]), labels=np.array([1])),  # forward from frame 0
            Prompt(2, 5, points=pts, labels=np.array([1, 0])),  # both ways from frame 5
            Prompt(3, 5, box=(float(x0), float(y0), float(x1), float(y1))),
        ],
    )
    assert r.object_ids == [1, 2, 3] and r.frames == list(range(10))
    assert all(r.tracked(f, o) for f in r.frames for o in (1, 2, 3))
    assert r.frames_visited == 10  # forward 0..9, every object from frame 0 (as the official predictor)
    # The prompts reach the model: other clicks / a box give other masks on the prompt frame.
    other = tiny_sam2.track(
        v, [Prompt(2, 5, points=np.array([[80.0, 60.0]]), labels=np.array([1]))], frames=[5]
    )
    assert not np.array_equal(other.mask(5, 2), r.mask(5, 2)) or not np.array_equal(
        r.mask(5, 3), r.mask(5, 2)
    )


def test_points_and_box_mixed_with_a_mask_in_object_order(tiny_sam2):
    from garvideo.trackers import build_prompts, masks_from_prompts

    v = ToyVideo(n=8)
    other = np.zeros((v.height, v.width), bool)
    other[50:66, 60:90] = True
    prompts = build_prompts([other], points=["12,30;2,2,0"], boxes=["5,20,29,44"], frame=2)
    assert [(p.obj_id, p.kind) for p in prompts] == [(1, "mask"), (2, "points"), (3, "box")]
    assert prompts[1].labels.tolist() == [1, 0] and prompts[2].box == (5.0, 20.0, 29.0, 44.0)
    r = tiny_sam2.track(v, prompts)
    assert r.object_ids == [1, 2, 3] and all(r.tracked(f, o) for f in r.frames for o in (1, 2, 3))
    assert jaccard(other, r.mask(2, 1)) > 0.9  # the model's S/4 version of the mask prompt
    # describe/ask: points and boxes become SAM 2's masks on the prompt frame only (that frame decoded
    # twice: for the prompt, as add_new_points_or_box, then by the pass, which returns its output).
    v.decoded = 0
    try:
        masks = masks_from_prompts(tiny_sam2, v, prompts)
    except InputError as exc:  # a random model may find nothing at a click: then it says so
        assert "found no object" in str(exc)
    else:
        assert len(masks) == 3 and np.array_equal(masks[0], other)
        assert np.array_equal(masks[1], r.mask(2, 2)) and np.array_equal(masks[2], r.mask(2, 3))
    assert v.decoded == 2


def test_points_and_boxes_without_sam2_say_how_to_get_it(sample_clip, tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("GARVIDEO_SAM2_CHECKPOINT", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("garvideo.trackers.sam2_backend.cached_hub_checkpoint", lambda: None)
    for extra in (
        ["--points", "50,60"],
        ["--box", "10,10,50,50"],
        ["--points", "50,60", "--tracker", "flow"],
    ):
        code, _, err = run_cli("track", sample_clip.video_path, *extra, "--out", tmp_path / "x")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith("error: --points/--box: point and box prompts need SAM 2"), err
        assert "--sam2-checkpoint" in lines[0]
    for bad, needle in ((["--points", "5"], "2 or 3 values"), (["--points", "5,5,2"], "label must be 1"),
                        (["--box", "5,5,1,9"], "empty"), (["--points", "5,5,0"], "positive point")):  # fmt: skip
        code, _, err = run_cli("track", sample_clip.video_path, *bad, "--tracker", "static", "--json")
        assert code == 2 and needle in err, (bad, err)


def test_track_cli_with_points_and_box_on_sam2(sample_clip, tmp_path, run_cli, hiera_t_checkpoint):
    from garvideo.masks import load_mask, read_track_rle

    out, rle = tmp_path / "m", tmp_path / "m.json"
    code, stdout, err = run_cli(
        "track", sample_clip.video_path, "--mask", sample_clip.object_masks[0], "--points", "160,120;5,5,0",
        "--box", "20,20,120,100", "--tracker", "sam2", "--sam2-checkpoint", hiera_t_checkpoint,
        "--image-size", "256", "--threads", "1", "--end", "3", "--out", out, "--rle", rle, "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["tracker"] == "sam2" and summary["tracker_reason"].startswith("sam2: --tracker sam2")
    assert list(summary["objects"]) == ["object0", "object1", "object2"]
    back = read_track_rle(rle)
    assert len(back) == 3 and sorted(back[0]) == [0, 1, 2]
    assert jaccard(back[0][0], sample_clip.gt(0)[0]) > 0.9  # the mask object, at the model's S/4
    from PIL import Image

    from garvideo.masks import masks_to_id_map

    none = np.zeros((sample_clip.height, sample_clip.width), bool)
    for f in range(3):  # the palette PNG is the id map of the same masks (later objects drawn over)
        png = np.asarray(Image.open(out / f"{f:05d}.png"))
        assert np.array_equal(png, masks_to_id_map([none if o[f] is None else o[f] for o in back]))
    assert len(load_mask(out / "00000.png")) >= 1


def test_batch_questions_take_points_and_boxes(tiny_sam2, tiny_model_dir, tmp_path):
    from PIL import Image

    from garvideo.pipeline import GarVideo
    from garvideo.runs.batch_qa import BatchAnswerer
    from garvideo.runs.questions import parse_question

    v = ToyVideo(n=4)
    frames = tmp_path / "clip"
    frames.mkdir()
    for i, im in v.frames(range(4)):
        Image.fromarray(im).save(frames / f"{i:05d}.png")
    line = {"id": "q", "video": "clip", "frame": 1, "question": "What is <object0> near <object1>?",
            "points": [[[12, 30], [2, 2, 0]]], "box": [5, 20, 29, 44]}  # fmt: skip
    q = parse_question(line, base=tmp_path)
    assert q.problem is None and q.points == ("12,30,1;2,2,0",) and q.boxes == ((5.0, 20.0, 29.0, 44.0),)
    assert q.mask_files == ()
    bad = parse_question({**line, "box": [5, 20, 1, 44]}, base=tmp_path)
    assert "'box'[0]" in bad.problem and "empty" in bad.problem
    mixed = parse_question({**line, "masks": [{"0": "m.png"}]}, base=tmp_path)
    assert "not both" in mixed.problem
    gv = GarVideo(model=str(tiny_model_dir), tracker=tiny_sam2, num_frames=1, max_new_tokens=1)
    record = BatchAnswerer(gv)(q)
    assert record["error"] is None and record["frames"]
    assert record["notes"][0].startswith("tracker: sam2")


def test_cli_describe_online_with_a_mask_tracks_with_sam2(
    hub, tiny_model_dir, sample_clip, tmp_path, run_cli
):
    # `garvideo describe clip --mask m.png` as a new user runs it, online with no checkpoint on disk
    # (the download answered from a local file). K = 1 and the prompt on the middle keyframe keep
    # SAM 2 (full-size hiera-t at 1024 on CPU) to one frame.
    from garvideo.masks import save_mask

    mask = save_mask(tmp_path / "m.png", sample_clip.gt(24)[0])
    code, out, err = run_cli(
        "describe", sample_clip.video_path, "--mask", mask, "--frame", "24", "--num-frames", "1",
        "--model", tiny_model_dir, "--max-new-tokens", "1", "--device", "cpu", "--json",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert hub.calls == [("facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt")]
    assert data["tracker"] == "sam2" and data["frames"] == [24]
    assert data["tracker_reason"] == "auto: sam2, downloaded facebook/sam2.1-hiera-tiny (the default on cpu)"
    assert data["notes"][0] == f"tracker: {data['tracker_reason']}"  # DescribeResult's note
