"""``garvideo serve``: the real server in a subprocess on a free loopback port with the tiny GAR, driven
by the official ``openai`` client (and raw HTTP / curl where a client would hide what is tested)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="garvideo serve needs the serve extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="garvideo serve needs the serve extra (fastapi, uvicorn)")
openai = pytest.importorskip(
    "openai", reason="the serve tests drive the server with the openai client (dev extra)"
)
httpx = pytest.importorskip("httpx")

from garvideo.serve.launch import ServerProcess

REPO = Path(__file__).resolve().parents[1]
GARVIDEO = [sys.executable, "-c", "from garvideo.cli import main; main()"]  # the command, in a subprocess
KEY = "test-key-123"
MAX_QUEUE = 8  # 9 requests in flight at most: the 8 concurrent ones fit, the 10th held one does not


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_clip, tiny_model_dir):
    """The server (static tracker, K=4, 8 new tokens by default, an API key, one allowed root) and the
    files the tests use: the root holds the sample clip, its frames, a text file named .mp4, and links
    leading out of the root."""
    root = tmp_path_factory.mktemp("root")
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(sample_clip.video_path, root / "clip.mp4")
    shutil.copytree(sample_clip.frames_dir, root / "frames")
    for p in (sample_clip.prompt_mask, *sample_clip.object_masks):
        shutil.copy(p, root / p.name)
    (root / "broken.mp4").write_text("this is not a video\n")
    shutil.copy(sample_clip.video_path, outside / "secret.mp4")
    (root / "escape.mp4").symlink_to(outside / "secret.mp4")
    (root / "leaky").mkdir()
    (root / "leaky" / "00000.png").symlink_to(sample_clip.frames_dir / "00000.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GARVIDEO_API_KEY": ""}
    argv = ["serve", "--model", str(tiny_model_dir), "--tracker", "static", "--num-frames", "4"]
    argv += ["--max-new-tokens", "8", "--port", "0", "--allowed-root", str(root), "--api-key", KEY]
    argv += ["--max-queue", str(MAX_QUEUE), "--max-upload-mb", "2"]
    with ServerProcess([*GARVIDEO, *argv], env=env, cwd=str(REPO)) as server:
        yield server, root, outside


@pytest.fixture(scope="module")
def client(served):
    server, _, _ = served
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def _video(url: str) -> dict:
    return {"type": "video_url", "video_url": {"url": url}}


def _ask(client, root: Path, text: str = "", *, masks=None, url=None, **kwargs):
    content = [_video(url or f"file://{root}/clip.mp4")] + ([{"type": "text", "text": text}] if text else [])
    extra = {"masks": masks if masks is not None else [{"frame": 0, "png": _b64(root / "object1_00000.png")}]}
    extra.update(kwargs.pop("extra", {}))
    return client.chat.completions.create(
        model="garvideo", messages=[{"role": "user", "content": content}], extra_body=extra, **kwargs
    )


def _health(server) -> dict:
    return httpx.get(server.url + "/health", timeout=10).json()


# ----------------------------------------------------------------------------------------------------
def test_models_health_describe_ask_and_cache(served, client):
    server, root, _ = served
    assert _health(server)["status"] == "ok"
    assert [m.id for m in client.models.list().data] == ["garvideo"]

    d = _ask(client, root)  # no text: describe
    g = d.model_extra["garvideo"]
    assert d.object == "chat.completion" and d.choices[0].message.role == "assistant"
    assert d.choices[0].message.content and g["task"] == "describe" and g["letter"] is None
    assert d.usage.completion_tokens == 8 and d.usage.prompt_tokens > 4 * 256  # 4 frames + regions
    assert d.choices[0].finish_reason == "length"  # 8 new tokens, the server's --max-new-tokens
    assert len(g["frames"]) == 4 and g["tracker"] == "static" and set(g["timings"]) >= {"tracking", "total"}

    a = _ask(client, root, "What is <object0> doing?", max_tokens=3)
    ga = a.model_extra["garvideo"]
    assert ga["task"] == "ask" and a.usage.completion_tokens == 3
    assert ga["clip"] == "cached" and ga["timings"]["vision"] == 0.0  # same clip and mask: prepared once
    assert ga["frames"] == g["frames"]
    sampled = _ask(client, root, "What is <object0> doing?", max_tokens=3, temperature=0.8, top_p=0.9)
    assert sampled.usage.completion_tokens <= 3 and sampled.model_extra["garvideo"]["clip"] == "cached"


def test_multiple_choice_two_objects_png_and_rle(served, client):
    from garvideo.masks import load_mask, rle_encode
    from garvideo.model.loading import parse_choice

    _, root, _ = served
    rle = rle_encode(load_mask(root / "object2_00000.png")[0])
    two = [{"frame": 0, "png": _b64(root / "object1_00000.png")}, {"frame": 0, "rle": rle}]
    q = "What is <object0> doing to <object1>?"
    free = _ask(client, root, q, masks=two, max_tokens=4)
    mc = _ask(client, root, q, masks=two, max_tokens=4, extra={"options": ["chasing it", "ignoring it"]})
    g = mc.model_extra["garvideo"]
    assert [o["id"] for o in g["objects"]] == ["object0", "object1"] and g["task"] == "ask"
    assert g["letter"] == parse_choice(mc.choices[0].message.content, 2)  # the letter the text names, or None
    assert mc.usage.prompt_tokens > free.usage.prompt_tokens  # the options are in the prompt
    # One id-map PNG with two ids is two objects, as on the command line.
    both = _ask(client, root, q, masks=[{"frame": 0, "png": _b64(root / "mask_00000.png")}], max_tokens=2)
    assert len(both.model_extra["garvideo"]["objects"]) == 2


def test_streaming_matches_the_plain_reply(served, client):
    _, root, _ = served
    q = "Where does <object0> go?"
    plain = _ask(client, root, q, max_tokens=6)
    chunks = list(_ask(client, root, q, max_tokens=6, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content  # greedy: the same tokens, streamed
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "length"
    assert finals[0].model_extra["garvideo"]["task"] == "ask"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    # The raw stream ends with [DONE].
    server = served[0]
    body = {
        "model": "garvideo",
        "stream": True,
        "max_tokens": 2,
        "messages": [{"role": "user", "content": [_video(f"file://{root}/clip.mp4")]}],
        "masks": [{"png": _b64(root / "object1_00000.png")}],
    }
    r = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.rstrip().endswith("data: [DONE]")


def test_data_url_video_and_frame_folder(served, client):
    _, root, _ = served
    by_file = _ask(client, root, "Is <object0> moving?", max_tokens=4)
    data_url = "data:video/mp4;base64," + _b64(root / "clip.mp4")
    by_data = _ask(client, root, "Is <object0> moving?", max_tokens=4, url=data_url)
    g = by_data.model_extra["garvideo"]
    assert g["clip"] == "cached"  # keyed by content: the same bytes as clip.mp4
    assert by_data.choices[0].message.content == by_file.choices[0].message.content
    folder = _ask(client, root, "Is <object0> moving?", max_tokens=4, url=f"file://{root}/frames")
    assert folder.model_extra["garvideo"]["clip"] == "prepared" and folder.usage.completion_tokens == 4


def _status(fn) -> tuple[int, dict]:
    try:
        fn()
    except openai.APIStatusError as exc:
        return exc.status_code, exc.body
    raise AssertionError("the request was accepted")


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(served, client):
    server, root, outside = served
    png1 = {"frame": 0, "png": _b64(root / "object1_00000.png")}
    wrong_size = {"frame": 0, "rle": {"size": [10, 10], "counts": [0, 100]}}
    empty = {"frame": 0, "rle": {"size": [240, 320], "counts": [240 * 320]}}
    cases = {
        "outside": (403, lambda: _ask(client, root, url=f"file://{outside}/secret.mp4")),
        "dotdot": (403, lambda: _ask(client, root, url=f"file://{root}/../{outside.name}/secret.mp4")),
        "symlink": (403, lambda: _ask(client, root, url=f"file://{root}/escape.mp4")),
        "folder link": (403, lambda: _ask(client, root, url=f"file://{root}/leaky")),
        "bad video": (400, lambda: _ask(client, root, url=f"file://{root}/broken.mp4")),
        "missing": (400, lambda: _ask(client, root, url=f"file://{root}/nothing.mp4")),
        "http url": (400, lambda: _ask(client, root, url="http://example.com/a.mp4")),
        "bad base64": (400, lambda: _ask(client, root, url="data:video/mp4;base64,@@@")),
        "mask size": (400, lambda: _ask(client, root, masks=[wrong_size])),
        "empty mask": (400, lambda: _ask(client, root, masks=[empty])),
        "bad png": (400, lambda: _ask(client, root, masks=[{"png": "bm90IGEgcG5n"}])),
        "no mask": (400, lambda: _ask(client, root, masks=[])),
        "two kinds": (400, lambda: _ask(client, root, masks=[{**png1, "box": [0, 0, 5, 5]}])),
        "unknown object": (400, lambda: _ask(client, root, "What is <object3> doing?")),
        "too many objects": (400, lambda: _ask(client, root, masks=[png1] * 6)),
        "points need sam2": (400, lambda: _ask(client, root, masks=[{"points": [[10, 10, 1]]}])),
        "frame range": (400, lambda: _ask(client, root, masks=[{**png1, "frame": 999}])),
        "one option": (400, lambda: _ask(client, root, "Which?", extra={"options": ["only"]})),
        "over context": (400, lambda: _ask(client, root, max_tokens=20000)),
        "too large": (413, lambda: _ask(client, root, url="data:video/mp4;base64," + "A" * (3 << 20))),
        "unknown model": (
            404,
            lambda: client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            ),
        ),
        "bad key": (
            401,
            lambda: openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list(),
        ),
    }
    for name, (status, call) in cases.items():
        got, body = _status(call)
        assert got == status, (name, got, body)
        assert set(body) >= {"message", "type", "param", "code"}, (name, body)
        assert "Traceback" not in body["message"], name
    points = _status(cases["points need sam2"][1])[1]
    assert "points/box prompts need a SAM 2 checkpoint" in points["message"]
    assert _status(cases["unknown object"][1])[1]["param"] == "messages"
    # Raw HTTP: bad JSON and a missing key get the same error shape.
    h = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", headers=h)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "garvideo", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    # Still serving, nothing left in flight.
    assert _ask(client, root, "Is <object0> here?", max_tokens=2).usage.completion_tokens == 2
    assert _health(server)["in_flight"] == 0 and server.proc.poll() is None


def test_eight_concurrent_requests_all_answered_and_share_one_preparation(served, client):
    server, root, _ = served
    mask = [{"frame": 0, "png": _b64(root / "object2_00000.png")}]
    questions = [f"Question {i}: what is <object0> doing?" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(
                lambda q: _ask(client, root, q, masks=mask, max_tokens=2, extra={"num_frames": 3}), questions
            )
        )
    assert len(replies) == 8 and all(r.usage.completion_tokens == 2 for r in replies)
    clips = sorted(r.model_extra["garvideo"]["clip"] for r in replies)
    assert clips == ["cached"] * 7 + ["prepared"]  # the clip was tracked and encoded once
    assert all(len(r.model_extra["garvideo"]["frames"]) == 3 for r in replies)
    assert _health(server)["in_flight"] == 0


def _hold(server, root: Path, max_tokens: int) -> socket.socket:
    """Send a streaming request over a raw socket and leave it open (read nothing)."""
    body = json.dumps(
        {
            "model": "garvideo",
            "stream": True,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": [_video(f"file://{root}/clip.mp4")]}],
            "masks": [{"png": _b64(root / "object1_00000.png")}],
        }
    ).encode()
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    s.sendall(head.encode() + body)
    return s


def _until(cond, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def test_full_queue_503_and_disconnect_stops_generation(served, client):
    server, root, _ = served
    before = _health(server)["requests"]
    # 1 running (a generation far longer than the test) + MAX_QUEUE waiting fill the queue.
    held = [_hold(server, root, 8000)]  # 8,000 tokens: minutes of generation for the tiny model here
    _until(lambda: _health(server)["running"])
    held += [_hold(server, root, 8000) for _ in range(MAX_QUEUE)]
    _until(lambda: _health(server)["in_flight"] == MAX_QUEUE + 1)
    try:
        _ask(client, root, max_tokens=1)
        raise AssertionError("a full queue accepted a request")
    except openai.APIStatusError as exc:
        assert exc.status_code == 503 and exc.body["code"] == "queue_full"
        assert int(exc.response.headers["Retry-After"]) >= 1
    # Every client goes away: the running generation stops and the waiting requests never run.
    for s in held:
        s.close()
    _until(lambda: _health(server)["in_flight"] == 0 and not _health(server)["running"])
    after = _health(server)["requests"]
    assert after["cancelled"] - before["cancelled"] == MAX_QUEUE + 1
    assert after["rejected"] - before["rejected"] == 1
    assert _ask(client, root, "Still there, <object0>?", max_tokens=2).usage.completion_tokens == 2


def _readme_block(lang: str, contains: str) -> str:
    """A code block of the API page (docs/api.md, where the README links for the API's examples)."""
    section = (REPO / "docs" / "api.md").read_text()
    blocks = re.findall(rf"```{lang}\n(.*?)```", section, flags=re.DOTALL)
    return next(b for b in blocks if contains in b)


def test_readme_examples_work_as_written(served, tmp_path):
    """The API page's Python client and curl examples, run against the test server: only the port and
    the /tmp/sample folder (here the allowed root, which holds the sample clip) are replaced."""
    server, root, _ = served
    port = server.url.rsplit(":", 1)[1]

    def adapt(code: str) -> str:
        return code.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("/tmp/sample", str(root))

    env = {**os.environ, "GARVIDEO_API_KEY": KEY}
    py = tmp_path / "example.py"
    py.write_text(adapt(_readme_block("python", "from openai import OpenAI")))
    out = subprocess.run(
        [sys.executable, str(py)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 3  # description, usage/frames/timings, streamed answer

    if shutil.which("curl") is None:
        pytest.fail("curl is not installed (apt-get install curl)")
    curl = adapt(_readme_block("bash", "curl "))
    out = subprocess.run(
        ["bash", "-c", curl], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply["object"] == "chat.completion" and reply["garvideo"]["task"] == "ask"
    assert reply["usage"]["completion_tokens"] > 0
    # The start-up commands the page shows are the real ones.
    setup = _readme_block("bash", "garvideo serve --model")
    assert "garvideo make-tiny-model /tmp/tiny-gar" in setup and "--allowed-root /tmp/sample" in setup


def test_file_urls_are_refused_without_an_allowed_root(tmp_path, sample_clip):
    """Without --allowed-root only data: URLs are served (checked on the server's URL resolver)."""
    from garvideo.serve.media import MediaStore
    from garvideo.serve.schema import ApiError

    store = MediaStore([], tmp_path, max_upload_bytes=1 << 30, max_files=2)
    with pytest.raises(ApiError) as exc:
        store.resolve(sample_clip.video_path.as_uri())
    assert exc.value.status == 403 and "--allowed-root" in exc.value.message
    src = store.resolve("data:video/mp4;base64," + _b64(sample_clip.video_path))
    assert (src.num_frames, src.height, src.width) == (48, 240, 320) and src.path.parent == tmp_path


def test_serve_help_has_an_example(run_cli):
    code, out, _ = run_cli("serve", "--help")
    assert code == 0 and "Example: garvideo serve" in out and "--allowed-root" in out


def test_points_and_box_go_to_sam2(sample_clip, tiny_model_dir):
    """Points and boxes are segmented by SAM 2 (a tiny random one here, seeded) when the server tracks with
    it (``garvideo.trackers.masks_from_prompts``). In process (the app without uvicorn), on the sample clip."""
    pytest.importorskip("sam2")
    import torch
    from starlette.testclient import TestClient

    from garvideo.masks import load_mask, rle_encode
    from garvideo.pipeline import GarVideo
    from garvideo.serve import ServeConfig, create_app
    from garvideo.trackers.sam2_backend import TINY_OVERRIDES, Sam2Tracker, build_sam2_model

    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    try:
        sam2 = build_sam2_model(
            "configs/sam2.1/sam2.1_hiera_t.yaml", image_size=128, extra_overrides=TINY_OVERRIDES
        )
        gv = GarVideo(model=str(tiny_model_dir), tracker=Sam2Tracker(model=sam2, device="cpu"), num_frames=2)
        rle = rle_encode(load_mask(sample_clip.object_masks[0])[0])
        body = {
            "model": "garvideo",
            "max_tokens": 1,
            "messages": [{"role": "user", "content": [_video(sample_clip.video_path.as_uri())]}],
            "masks": [{"rle": rle}, {"points": [[200, 150, 1], [5, 5, 0]]}, {"box": [150, 100, 250, 200]}],
        }
        body["messages"][0]["content"].append({"type": "text", "text": "What is <object1> doing?"})
        with TestClient(create_app(gv, ServeConfig(allowed_roots=[sample_clip.root]))) as http:
            r = http.post("/v1/chat/completions", json=body)
    finally:
        torch.set_num_threads(threads)
    # With the seeded random SAM 2 (torch.manual_seed(0) above) the point and the box segment something:
    # the request is answered about all three objects. (A server without SAM 2 refusing points is
    # test_bad_requests_...'s "points need sam2" case.)
    assert r.status_code == 200, r.text
    g = r.json()["garvideo"]
    assert g["tracker"] == "sam2" and [o["id"] for o in g["objects"]] == ["object0", "object1", "object2"]
    assert r.json()["usage"]["completion_tokens"] == 1
