"""Dynamic batching in ``garvideo serve`` and the pipeline hooks it uses, on the tiny GAR in float32 (its
LLM scaled by ``lively_bundle`` so that greedy text varies from token to token and a mix-up of rows shows).

* the pipeline: ``GarModel.generate_batch(on_token=)``, ``GarVideo.run_batch`` with per-row ``stream``,
  ``on_result`` (rows that end early are reported first) and ``return_exceptions`` (a stream that raises
  stops its row only);
* the server (uvicorn in a thread, the official ``openai`` client): concurrent requests — describe,
  free-form, multiple choice, two clips, one and two objects, one streaming — answered in one batch
  give, token for token, the answers of the same requests served one at a time; a row that ends early
  is answered while a longer row still runs; a cancelled row leaves the batch;
* ``GET /metrics`` (Prometheus text, one registry per app) and the clip cache's holds.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from garvideo.model.tiny import lively_bundle
from garvideo.pipeline import AnswerResult, GarVideo, Question
from garvideo.serve.launch import ServerThread


@pytest.fixture(scope="module")
def gv(tiny_model_dir) -> GarVideo:
    from garvideo.model import load_gar

    bundle = lively_bundle(load_gar(tiny_model_dir, dtype="float32", device="cpu"))
    return GarVideo(model=bundle, tracker="static", num_frames=3, max_new_tokens=6)


# ----------------------------------------------------------------------------------------------------
# the pipeline hooks
# ----------------------------------------------------------------------------------------------------
def test_generate_batch_on_token_sees_every_token_and_stops_a_row(gv) -> None:
    import torch

    model = gv.bundle.model
    gen = torch.Generator().manual_seed(1)
    rows = [torch.randn(1, n, model.hidden_size, generator=gen) for n in (4, 7, 2)]
    want = model.generate_batch(rows, max_new_tokens=[6, 6, 3])
    seen: list[tuple[int, int, bool]] = []

    def on_token(row: int, token: int, last: bool) -> bool:
        seen.append((row, token, last))
        return not (row == 1 and len([s for s in seen if s[0] == 1]) == 2)  # row 1 stops at its 2nd token

    got = model.generate_batch(rows, max_new_tokens=[6, 6, 3], on_token=on_token)
    assert got[0] == want[0] and got[2] == want[2]  # the other rows are not disturbed
    assert got[1] == want[1][:2]  # row 1 kept the tokens it had
    for r in range(3):
        mine = [(t, last) for row, t, last in seen if row == r]
        assert [t for t, _ in mine] == got[r]
        assert [last for _, last in mine] == [False] * (len(mine) - 1) + [r != 1]  # row 1 was stopped


class _Stop(Exception):
    pass


def test_run_batch_streams_rows_reports_early_rows_first_and_stops_one_row(gv, sample_clip) -> None:
    from garvideo.masks import load_mask

    masks = load_mask(sample_clip.prompt_mask)
    a = gv.prepare(sample_clip.video_path, masks=masks, frame=0)
    b = gv.prepare(sample_clip.video_path, masks=masks[1:], frame=0, num_frames=2)
    try:
        pieces: dict[int, list[str]] = {i: [] for i in range(5)}

        def collect(i: int):
            return lambda piece: pieces[i].append(piece)

        def stopper(piece: str) -> None:
            pieces[4].append(piece)
            if len(pieces[4]) == 2:
                raise _Stop("client gone")

        questions = [
            Question(a, "What is <object0> doing to <object1>?", max_new_tokens=8, stream=collect(0)),
            Question(b, max_new_tokens=2, stream=collect(1)),  # ends first
            Question(a, "Which is bigger?", ["<object0>", "<object1>"], max_new_tokens=5, stream=collect(2)),
            Question(b, "Where does <object0> go?", max_new_tokens=8),  # no stream
            Question(a, max_new_tokens=8, stream=stopper),  # its stream stops it after 2 pieces
        ]
        want = []
        for q in questions[:4]:
            if q.question is None:
                want.append(gv.describe(q.clip, max_new_tokens=q.max_new_tokens))
            else:
                want.append(gv.ask(q.clip, q.question, q.options, max_new_tokens=q.max_new_tokens))
        reported: list[int] = []
        got = gv.run_batch(
            questions, batch_size=8, return_exceptions=True, on_result=lambda i, _: reported.append(i)
        )
        for i, (g, w) in enumerate(zip(got[:4], want)):
            assert (g.text, g.new_tokens, g.prompt_tokens) == (w.text, w.new_tokens, w.prompt_tokens), i
            if isinstance(w, AnswerResult):
                assert g.letter == w.letter
        for i in (0, 1, 2):
            assert "".join(pieces[i]) == got[i].text  # each row streamed its own text
        assert len({g.text for g in got[:4]}) == 4
        assert isinstance(got[4], _Stop) and len(pieces[4]) == 2  # the stopped row left the batch
        assert sorted(reported) == [0, 1, 2, 3, 4]
        assert reported.index(1) < min(reported.index(i) for i in (0, 3))  # 2 tokens: reported first
        assert reported.index(4) < reported.index(0)  # stopped at its 2nd piece, before the 8-token rows
        # Without return_exceptions the stream's error is raised.
        with pytest.raises(_Stop):
            pieces[4].clear()
            gv.run_batch([questions[0], questions[4]], batch_size=2)
        # A bad question is that question's entry; the others are answered.
        mixed = gv.run_batch([Question(b, "Is <object3> there?"), questions[3]], return_exceptions=True)
        assert "<object3>" in str(mixed[0]) and mixed[1].text == want[3].text
    finally:
        a.close()
        b.close()


# ----------------------------------------------------------------------------------------------------
# the clip cache and the metrics (no server)
# ----------------------------------------------------------------------------------------------------
class _Clip:
    def __init__(self) -> None:
        self.video = object()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        self.video = None


def test_clip_cache_closes_an_evicted_clip_only_when_its_last_holder_lets_go() -> None:
    from garvideo.serve.cache import ClipCache

    cache = ClipCache(1)
    a, b = _Clip(), _Clip()
    cache.put("a", a, hold=True)
    assert cache.acquire("a") is a  # held twice
    cache.put("b", b)  # evicts a, which is held: not closed
    assert a.closed == 0 and cache.get("a") is None and len(cache) == 1
    cache.release(a)
    assert a.closed == 0
    cache.release(a)  # the last holder
    assert a.closed == 1
    cache.put("c", _Clip())  # b, not held: closed at once
    assert b.closed == 1
    cache.clear()


def _metrics(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out


def test_metrics_are_prometheus_text_with_one_registry_per_app(tiny_model_dir) -> None:
    pytest.importorskip("prometheus_client")
    from starlette.testclient import TestClient

    from garvideo.serve import create_app

    apps = [create_app(GarVideo(model=str(tiny_model_dir), tracker="static")) for _ in range(2)]
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        assert one.post("/v1/chat/completions", content=b"{not json").status_code == 400
        assert one.post("/v1/chat/completions", json={"model": "x", "messages": []}).status_code == 400
        r = one.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        m1, m2 = _metrics(r.text), _metrics(two.get("/metrics").text)
    assert m1["garvideo_http_requests_total{status=400}"] == 2
    assert "garvideo_http_requests_total{status=400}" not in m2  # its own registry
    for name in (
        "garvideo_queue_depth",
        "garvideo_running_rows",
        "garvideo_in_flight",
        "garvideo_batch_rows_count",
        "garvideo_request_seconds_count",
        "garvideo_queue_seconds_count",
        "garvideo_first_token_seconds_count",
        "garvideo_generated_tokens_total",
        "garvideo_prompt_tokens_total",
        "garvideo_clip_cache_clips",
        "garvideo_requests_total{outcome=served}",
        "garvideo_requests_total{outcome=rejected}",
    ):
        assert name in m1, name
    assert m1["garvideo_queue_depth"] == 0 and m1["garvideo_in_flight"] == 0


# ----------------------------------------------------------------------------------------------------
# the server
# ----------------------------------------------------------------------------------------------------
def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _until(cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _hold(url: str, body: dict) -> socket.socket:
    """Send a streaming request over a raw socket and leave it open (read nothing)."""
    data = json.dumps({**body, "stream": True}).encode()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    s.sendall(head.encode() + data)
    return s


@pytest.mark.slow
def test_concurrent_requests_answered_in_one_batch_equal_one_at_a_time(gv, sample_clip) -> None:
    openai = pytest.importorskip("openai")
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from garvideo.serve import ServeConfig, create_app

    root = sample_clip.root
    png = {p.name: _b64(p) for p in (sample_clip.prompt_mask, *sample_clip.object_masks)}
    one = [{"frame": 0, "png": png[sample_clip.object_masks[0].name]}]
    other = [{"frame": 0, "png": png[sample_clip.object_masks[1].name]}]
    two = one + other
    both = [{"frame": 0, "png": png[sample_clip.prompt_mask.name]}]  # an id map: two objects
    clip = sample_clip.video_path.as_uri()
    frames = sample_clip.frames_dir.as_uri()  # a second clip (a frame folder)

    def body(url, masks, text=None, max_tokens=6, **extra):
        content = [{"type": "video_url", "video_url": {"url": url}}]
        if text:
            content.append({"type": "text", "text": text})
        messages = [{"role": "user", "content": content}]
        return {"model": "garvideo", "messages": messages, "masks": masks, "max_tokens": max_tokens, **extra}

    requests = [
        body(clip, one, None, 5),  # describe
        body(clip, two, "What is <object0> doing to <object1>?", 9),  # free-form, two objects
        body(clip, two, "Which one is bigger?", 4, options=["<object0>", "<object1>", "neither"]),
        body(frames, other, "Where does <object0> go?", 7, num_frames=2),  # the other clip; streamed
        body(clip, both, None, 3),  # describe two objects: ends first
    ]
    streamed = 3
    app = create_app(gv, ServeConfig(allowed_roots=[root], max_batch_size=8, batch_wait_ms=50))
    server = ServerThread(app, timeout=60).start()
    api = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=300)

    def health() -> dict:
        return httpx.get(server.url + "/health", timeout=10).json()

    def send(b: dict) -> dict:
        kw = {k: v for k, v in b.items() if k not in ("model", "messages", "max_tokens", "stream")}
        args = {
            "model": b["model"],
            "messages": b["messages"],
            "max_tokens": b["max_tokens"],
            "extra_body": kw,
        }
        if b.get("stream"):
            chunks = list(
                api.chat.completions.create(**args, stream=True, stream_options={"include_usage": True})
            )
            final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
            return {
                "text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                "tokens": chunks[-1].usage.completion_tokens,
                "prompt": chunks[-1].usage.prompt_tokens,
                "letter": final.model_extra["garvideo"]["letter"],
                "done_at": time.monotonic(),
            }
        r = api.chat.completions.create(**args)
        return {
            "text": r.choices[0].message.content,
            "tokens": r.usage.completion_tokens,
            "prompt": r.usage.prompt_tokens,
            "letter": r.model_extra["garvideo"]["letter"],
            "done_at": time.monotonic(),
        }

    requests[streamed]["stream"] = True
    try:
        before = health()["requests"]
        # A long request keeps the model busy while the others arrive and are prepared.
        blocker = _hold(server.url, body(clip, one, "Tell me everything about <object0>.", 2000))
        _until(lambda: health()["running"])
        with ThreadPoolExecutor(len(requests)) as pool:
            futures = [pool.submit(send, b) for b in requests]
            long_row = _hold(server.url, body(clip, two, "And <object1>?", 2000))  # cancelled in its batch
            _until(lambda: health()["ready"] == len(requests) + 1)  # all prepared, waiting for the model
            metrics_before = _metrics(httpx.get(server.url + "/metrics").text)
            blocker.close()  # the blocker's row is cancelled: the waiting requests run, together
            batched = [f.result(timeout=300) for f in futures]
        # The short rows were answered while the long row still runs in their batch.
        assert health()["running_rows"] == 1
        long_row.close()
        _until(lambda: health()["in_flight"] == 0 and not health()["running"])
        after = health()["requests"]
        assert after["cancelled"] - before["cancelled"] == 2 and after["served"] - before["served"] == 5
        m = _metrics(httpx.get(server.url + "/metrics").text)
        # Exactly one more batch, of all six ready requests.
        assert m["garvideo_batch_rows_count"] - metrics_before["garvideo_batch_rows_count"] == 1
        assert m["garvideo_batch_rows_sum"] - metrics_before["garvideo_batch_rows_sum"] == len(requests) + 1
        assert batched[4]["done_at"] < min(b["done_at"] for b in batched[:4])  # 3 tokens: answered first
        # The same requests, one at a time (each a batch of one).
        alone = [send(b) for b in requests]
        m2 = _metrics(httpx.get(server.url + "/metrics").text)
        assert m2["garvideo_batch_rows_sum"] - m["garvideo_batch_rows_sum"] == len(requests)
        assert m2["garvideo_generated_tokens_total"] - m["garvideo_generated_tokens_total"] == sum(
            a["tokens"] for a in alone
        )
    finally:
        server.stop()
    for i, (b, a) in enumerate(zip(batched, alone)):
        assert (b["text"], b["tokens"], b["prompt"], b["letter"]) == (
            a["text"],
            a["tokens"],
            a["prompt"],
            a["letter"],
        ), i
    assert [a["tokens"] for a in alone] == [5, 9, 4, 7, 3]  # the tiny model ran each row to its limit
    assert len({a["text"] for a in alone}) == len(alone)  # distinct texts: a mix-up of rows would show
