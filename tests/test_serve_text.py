"""``{"frame": N, "text": "..."}`` objects in ``garvideo serve``'s ``masks``: a real server subprocess on the
tiny random SAM 3 + tiny GAR, driven by the official ``openai`` client. The candidates come back in the
reply's ``garvideo.text_prompts`` (the same objects as ``garvideo track --text --json``); no match is a 400
in the server's error format."""

from __future__ import annotations

import os

import pytest
from test_serve import GARVIDEO, KEY, REPO, _status, _video, openai  # the serve tests' setup

from garvideo.serve.launch import ServerProcess


@pytest.fixture(scope="module")
def text_served(sample_clip, tiny_model_dir, tiny_sam3_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GARVIDEO_API_KEY": ""}
    root = sample_clip.root
    argv = ["serve", "--model", str(tiny_model_dir), "--tracker", "flow", "--num-frames", "2",
            "--max-new-tokens", "3", "--port", "0", "--allowed-root", str(root), "--api-key", KEY,
            "--sam3-checkpoint", str(tiny_sam3_dir), "--text-threshold", "0"]  # fmt: skip
    with ServerProcess([*GARVIDEO, *argv], env=env, cwd=str(REPO)) as server:
        yield server, openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def _ask(client, url: str, masks: list, text: str = ""):
    content = [_video(url)] + ([{"type": "text", "text": text}] if text else [])
    return client.chat.completions.create(
        model="garvideo", messages=[{"role": "user", "content": content}], extra_body={"masks": masks}
    )


def test_text_objects_candidates_pick_and_no_match(text_served, sample_clip, tiny_sam3_dir) -> None:
    from garvideo.trackers.text import TextDetector
    from garvideo.video import open_video

    _, client = text_served
    url = sample_clip.video_path.as_uri()
    with open_video(sample_clip.video_path) as v:
        image = next(iter(v.frames([0])))[1]
    want = TextDetector(str(tiny_sam3_dir), device="cpu", threshold=0.0).detect(image, "the swan")
    reply = _ask(client, url, [{"frame": 0, "text": "the swan"}])
    extra = reply.model_extra["garvideo"]
    assert isinstance(reply.choices[0].message.content, str) and [o["id"] for o in extra["objects"]] == [
        "object0"
    ]
    (t,) = extra["text_prompts"]
    assert t["text"] == "the swan" and t["picked"] == 0 and t["frame"] == 0
    assert t["candidates"] == [c.to_json() for c in want.candidates]
    # pick, beside an RLE mask (a text object is an object like any other; objects keep their order)
    from garvideo.masks import load_mask, rle_encode

    rle = rle_encode(load_mask(sample_clip.object_masks[0])[0])
    reply = _ask(
        client,
        url,
        [{"frame": 0, "rle": rle}, {"frame": 0, "text": "the swan", "pick": 1}],
        "Is <object1> near <object0>?",
    )
    extra = reply.model_extra["garvideo"]
    assert [o["id"] for o in extra["objects"]] == ["object0", "object1"] and extra["text_prompts"][0][
        "picked"
    ] == 1
    # a pick beyond the candidates, an empty text, pick without text: 400 in the server's error format
    code, body = _status(lambda: _ask(client, url, [{"frame": 0, "text": "the swan", "pick": 99}]))
    assert code == 400 and "99 is out of range" in body["message"] and body["code"] == "bad_prompt"
    code, body = _status(lambda: _ask(client, url, [{"frame": 0, "text": " "}]))
    assert code == 400 and body["param"] == "masks[0].text"
    code, body = _status(lambda: _ask(client, url, [{"frame": 0, "rle": rle, "pick": 1}]))
    assert code == 400 and body["param"] == "masks[0].pick"


def test_no_match_is_400_listing_the_best_scores(sample_clip, tiny_model_dir, tiny_sam3_dir) -> None:
    """In process (the app without uvicorn): a threshold nothing reaches."""
    from fastapi.testclient import TestClient

    from garvideo.pipeline import GarVideo
    from garvideo.serve import ServeConfig, create_app

    gv = GarVideo(model=str(tiny_model_dir), tracker="static", num_frames=1, max_new_tokens=2, device="cpu")
    app = create_app(
        gv,
        ServeConfig(
            allowed_roots=[sample_clip.root], sam3_checkpoint=str(tiny_sam3_dir), text_threshold=0.99
        ),
    )
    body = {
        "model": "garvideo",
        "messages": [{"role": "user", "content": [_video(sample_clip.video_path.as_uri())]}],
        "masks": [{"frame": 0, "text": "the swan"}],
    }
    with TestClient(app) as http:
        r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "no_text_match" and err["param"] == "masks"
    assert "no object scored above the threshold 0.99 on frame 0 (best scores: 0." in err["message"]
