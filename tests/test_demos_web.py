"""The web demo in a real browser: Debian's chromium, headless, driven by Playwright.

The demo runs as users start it (``python -m garvideo.demos.web --model DIR``) in a subprocess bound
to 127.0.0.1; the test uploads the synthetic clip and its mask, runs describe (and a question) with
the tiny random GAR and the flow tracker, and checks what the page shows: the random-weights
warning, the clip facts, the objects, an overlay video the browser can decode, and the same text
the library produces for the same inputs. A screenshot goes to ``tests/artifacts/web_demo.png``.

Set-up (CI, as root): ``apt-get install -y chromium`` and ``pip install "garvideo[demo]" playwright``
(no ``playwright install``: the test launches the system chromium). Without them the test skips with
the reason, unless ``GARVIDEO_REQUIRE_BROWSER=1`` (set by ``make test``), where it fails instead.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SERVER_START_TIMEOUT_S = 180.0
UI_TIMEOUT_MS = 120_000
NUM_FRAMES = 2
MAX_NEW_TOKENS = 12
QUESTION = "What is <object0> doing to <object1>?"


def _unavailable(reason: str) -> None:
    if os.environ.get("GARVIDEO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (GARVIDEO_REQUIRE_BROWSER=1: the browser test must run)")
    pytest.skip(reason)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    _unavailable("Debian chromium is not installed (as root: apt-get update && apt-get install -y chromium)")
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def browser_exe() -> str:
    """The system chromium (with gradio and playwright importable), or a skip saying what is missing."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        _unavailable('gradio is not installed (pip install "garvideo[demo]")')
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; the system chromium is used)")
    return _chromium()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random GAR through ``make_tiny_model`` whose greedy output on the sample clip is visible
    text (seed 0 generates only newlines, stripped to "")."""
    from garvideo.model import make_tiny_model

    return Path(make_tiny_model(tmp_path_factory.mktemp("tiny_gar_seed1"), seed=1))


@contextlib.contextmanager
def _web_process(tiny_model: Path, tmp_path_factory, extra_args=(), before=None):
    """``python -m garvideo.demos.web`` on a free port of 127.0.0.1 (flow tracker, the tiny model, plus
    ``extra_args``); yields its URL. ``before()`` runs while the server starts."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("web") / "server.log"
    env = dict(
        os.environ,
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        GRADIO_TEMP_DIR=str(tmp_path_factory.mktemp("gradio")),
    )
    cmd = [
        sys.executable,
        "-m",
        "garvideo.demos.web",
        "--model",
        str(tiny_model),
        "--tracker",
        "flow",
        "--num-frames",
        str(NUM_FRAMES),
        "--max-new-tokens",
        str(MAX_NEW_TOKENS),
        "--port",
        str(port),
        *map(str, extra_args),
    ]
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        try:
            if before is not None:
                before()
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(
                        f"the web demo exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
                    )
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the web demo did not answer on {url} within {SERVER_START_TIMEOUT_S:.0f} s:\n"
                        f"{log_path.read_text()[-4000:]}"
                    )
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture(scope="module")
def web_server(browser_exe, tiny_model, tmp_path_factory, request):
    """``python -m garvideo.demos.web`` on a free port of 127.0.0.1; yields its URL.

    While the server starts, the expected texts are computed in this process (``expected``)."""
    with _web_process(
        tiny_model, tmp_path_factory, before=lambda: request.getfixturevalue("expected")
    ) as url:
        yield url


@pytest.fixture(scope="module")
def web_demo(tiny_model, tmp_path_factory):
    """The page's logic in this process, set up as the server below is."""
    from garvideo.demos._common import demo_options
    from garvideo.demos.web import WebDemo

    options = demo_options(
        model=str(tiny_model), tracker="flow", num_frames=NUM_FRAMES, max_new_tokens=MAX_NEW_TOKENS
    )
    return WebDemo(options, workdir=tmp_path_factory.mktemp("web_runs"))


@pytest.fixture(scope="module")
def expected(web_demo, sample_clip):
    """What the library says for the same inputs (the page must show exactly this)."""
    from garvideo.masks import load_mask

    masks = load_mask(sample_clip.prompt_mask, size=(sample_clip.height, sample_clip.width))
    gv = web_demo.pipeline
    clip = gv.prepare(sample_clip.video_path, masks=masks, frame=0)
    described = gv.describe(clip)
    asked = gv.ask(clip, QUESTION)
    return {"describe": described.text, "ask": asked.text, "areas": [int(m.sum()) for m in masks]}


@pytest.mark.browser
@pytest.mark.slow
def test_web_demo_describe_and_ask_in_chromium(web_server, browser_exe, sample_clip, expected):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(web_server, timeout=UI_TIMEOUT_MS)

            # Upload the clip: the page reads its facts and shows the prompt frame.
            page.locator("#video-input input[type=file]").set_input_files(str(sample_clip.video_path))
            info = page.locator("#prompt-info")
            expect(info).to_contain_text(f"{sample_clip.num_frames} frames", timeout=UI_TIMEOUT_MS)
            expect(info).to_contain_text(f"{sample_clip.width}×{sample_clip.height}")
            frame_img = page.locator("#frame-image img")
            expect(frame_img).to_be_visible(timeout=UI_TIMEOUT_MS)
            page.wait_for_function(
                "document.querySelector('#frame-image img').naturalWidth > 0", timeout=UI_TIMEOUT_MS
            )
            assert frame_img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [
                sample_clip.width,
                sample_clip.height,
            ]

            # Moving the prompt frame (typed into the slider's number box) updates the page.
            number = page.locator("#frame input[type=number]")
            for f in ("5", "0"):
                number.fill(f)
                number.press("Enter")
                expect(info).to_contain_text(f"prompt frame {f}.", timeout=UI_TIMEOUT_MS)

            # Upload the id map: two objects, with the pixel counts of the file.
            page.locator("#mask-input input[type=file]").set_input_files(str(sample_clip.prompt_mask))
            for i, area in enumerate(expected["areas"]):
                expect(info).to_contain_text(
                    f"<object{i}> (id {i + 1} in the video): mask of {area} px", timeout=UI_TIMEOUT_MS
                )

            # Describe: the overlay video appears and plays in the browser, then the text.
            page.locator("#run").click()
            video = page.locator("#overlay-video video")
            expect(video).to_have_count(1, timeout=UI_TIMEOUT_MS)
            expect(page.locator("#run-info")).to_contain_text("Described in", timeout=UI_TIMEOUT_MS)
            page.wait_for_function(
                "document.querySelector('#overlay-video video').readyState >= 1", timeout=UI_TIMEOUT_MS
            )
            width, height, duration, src = video.evaluate(
                "v => [v.videoWidth, v.videoHeight, v.duration, v.currentSrc]"
            )
            assert src.endswith("overlay.webm")  # the final overlay, with the text in a band below
            assert width == sample_clip.width and height > sample_clip.height
            assert duration == pytest.approx(sample_clip.num_frames / sample_clip.fps, abs=0.25)
            answer = page.locator("#answer textarea")
            assert answer.input_value() == expected["describe"]
            assert expected["describe"].strip(), "the tiny model generated no text"

            # Ask about both objects on the same clip.
            page.locator("#task").get_by_text("ask", exact=True).click()
            page.locator("#question textarea").fill(QUESTION)
            page.locator("#run").click()
            expect(page.locator("#run-info")).to_contain_text("Answered in", timeout=UI_TIMEOUT_MS)
            assert answer.input_value() == expected["ask"]

            page.screenshot(path=str(ARTIFACTS / "web_demo.png"), full_page=True)

            # The page says the weights are random.
            expect(page.locator("#banner")).to_contain_text("Random tiny model", timeout=10_000)

            # No error toast anywhere on the page.
            assert page.locator(".toast-body.error").count() == 0
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.slow
def test_web_demo_shows_user_text_and_file_names_as_text_in_chromium(
    web_server, browser_exe, sample_clip, tmp_path
):
    """Issue 19, item 4: messages with ``<object1>`` are shown whole, and a file name with markup in it
    adds no element and runs no script."""
    from playwright.sync_api import expect, sync_playwright

    evil = tmp_path / '<img src=x onerror="window.__pwned=1">.png'
    evil.write_bytes(b"not a png")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(web_server, timeout=UI_TIMEOUT_MS)
            page.locator("#video-input input[type=file]").set_input_files(str(sample_clip.video_path))
            info = page.locator("#prompt-info")
            expect(info).to_contain_text(f"{sample_clip.num_frames} frames", timeout=UI_TIMEOUT_MS)
            page.locator("#mask-input input[type=file]").set_input_files(str(sample_clip.object_masks[0]))
            expect(info).to_contain_text("<object0> (id 1 in the video): mask of", timeout=UI_TIMEOUT_MS)

            toast = page.locator("[data-testid='toast-text']")
            page.locator("#task").get_by_text("ask", exact=True).click()
            page.locator("#run").click()  # no question
            expect(toast.last).to_contain_text(
                "type a question (refer to the objects as <object0>, <object1>, …)", timeout=UI_TIMEOUT_MS
            )
            page.locator("#question textarea").fill("Is <object0> near <object1>?")
            page.locator("#run").click()
            expect(toast.last).to_contain_text(
                "question: refers to <object1> but only 1 object(s) were given (<object0>)",
                timeout=UI_TIMEOUT_MS,
            )
            page.locator("#mask-input").get_by_role(
                "button", name=re.compile("clear", re.IGNORECASE)
            ).first.click()
            page.locator("#mask-input input[type=file]").set_input_files(str(evil))
            # (Gradio's upload strips < > from the stored name; what is left is shown as text)
            expect(toast.last).to_contain_text("src=x onerror=", timeout=UI_TIMEOUT_MS)
            expect(toast.last).to_contain_text("unreadable mask image")
            assert (
                page.locator("[data-testid='toast-text'] img, [data-testid='toast-text'] object").count() == 0
            )
            assert page.evaluate("window.__pwned === undefined")

            # a run: the status line names the objects in full
            page.locator("#task").get_by_text("describe", exact=True).click()
            page.locator("#run").click()
            expect(page.locator("#run-info")).to_contain_text("Described in", timeout=UI_TIMEOUT_MS)
            assert page.evaluate("window.__pwned === undefined")
        finally:
            browser.close()


# ----------------------------------------------------------------------------------------------------
# the page's logic without a browser (WebDemo): prompts, errors, the run's updates
# ----------------------------------------------------------------------------------------------------
def test_web_demo_says_the_weights_are_random(web_demo, tiny_model):
    from garvideo.demos.web import has_random_weights

    assert web_demo.random_weights and has_random_weights(web_demo.bundle)
    banner = web_demo.banner()
    assert "Random tiny model" in banner and str(tiny_model) in banner and "`flow`" in banner
    assert "No SAM 2 checkpoint" in banner and not web_demo.clicks_available


def test_web_demo_prompts_from_mask_files(web_demo, sample_clip, tmp_path):
    from PIL import Image

    from garvideo.errors import InputError
    from garvideo.overlay import object_color
    from garvideo.video import open_video

    state = web_demo.open_clip(str(sample_clip.video_path))
    assert (state.num_frames, state.width, state.height, state.frame) == (48, 320, 240, 0)
    with pytest.raises(InputError, match="give at least one object"):
        state.masks()
    # one object per file, given for object1 first: a gap at object0 is refused
    state = web_demo.upload_mask(state, str(sample_clip.object_masks[1]), 1)
    with pytest.raises(InputError, match="object0"):
        state.masks()
    state = web_demo.upload_mask(state, str(sample_clip.object_masks[0]), 0)
    gt = sample_clip.gt(0)
    assert all(np.array_equal(m, g) for m, g in zip(state.masks(), gt))
    assert f"<object1>` (id 2 in the video): mask of {gt[1].sum()} px (upload)" in web_demo.describe_prompts(
        state
    )

    # the preview draws each object in its colour where its mask is
    drawn = web_demo.render_frame(state).astype(np.float32)
    with open_video(sample_clip.video_path) as video:
        orig = video.frame(0).astype(np.float32)
    for k, g in enumerate(gt):
        inner = cv2.erode(g.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        tinted = 0.55 * orig + 0.45 * np.array(object_color(k + 1), np.float32)
        assert np.abs(drawn - tinted)[inner].mean() < 2
    # nothing drawn away from the masks and their id labels (drawn just above each mask)
    far = ~cv2.dilate((gt[0] | gt[1]).astype(np.uint8), np.ones((49, 49), np.uint8)).astype(bool)
    assert np.abs(drawn - orig)[far].max() == 0

    # an id map fills object0, object1, ...; past object4 it is refused
    state = web_demo.upload_mask(
        web_demo.open_clip(str(sample_clip.video_path)), str(sample_clip.prompt_mask), 0
    )
    assert len(state.masks()) == 2
    with pytest.raises(InputError, match="GAR takes at most 5 objects"):
        web_demo.upload_mask(state, str(sample_clip.prompt_mask), 4)
    small = tmp_path / "small.png"
    Image.fromarray(np.full((100, 100), 255, np.uint8)).save(small)
    with pytest.raises(InputError, match="mask is 100x100 but the video frames are 320x240"):
        web_demo.upload_mask(state, str(small), 2)
    with pytest.raises(InputError, match="upload a clip first"):
        web_demo.upload_mask(web_demo.open_clip(None), str(small), 0)
    # clicks need SAM 2; a new prompt frame drops the prompts of the old one
    with pytest.raises(InputError, match="--sam2-checkpoint"):
        web_demo.click(state, 10, 10, "positive point", 0)
    moved = web_demo.set_frame(state, 5)
    assert moved.frame == 5 and not moved.objects and web_demo.set_frame(state, 0) is state
    with pytest.raises(InputError, match="out of range"):
        web_demo.set_frame(state, 48)


@pytest.mark.slow
def test_web_demo_run_streams_then_reuses_the_prepared_clip(web_demo, sample_clip, expected):
    from garvideo.errors import InputError
    from garvideo.video import open_video

    state = web_demo.upload_mask(
        web_demo.open_clip(str(sample_clip.video_path)), str(sample_clip.prompt_mask), 0
    )
    updates = list(web_demo.run(state, "describe"))
    first, last = updates[0], updates[-1]
    assert first.text == "" and first.video.endswith(".webm") and not first.done
    assert last.done and last.text == expected["describe"] and "Described in" in last.status
    assert all(not u.done for u in updates[:-1]) and len(updates) >= 3  # text arrived in pieces
    texts = [u.text for u in updates[1:-1]]
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts))  # growing
    for path, caption in ((first.video, False), (last.video, True)):  # tracks, then with the text: full clips
        with open_video(path) as v:
            assert (v.num_frames, v.width) == (48, 320)
            assert v.height > 240 if caption else v.height == 240  # the text is in a band below the frame
    clip = web_demo._clip
    answer = list(web_demo.run(state, "ask", QUESTION))[-1]
    assert answer.text == expected["ask"] and web_demo._clip is clip  # same clip, frame and masks: reused
    with pytest.raises(InputError, match="type a question"):
        next(web_demo.run(state, "ask", "  "))
    with pytest.raises(InputError, match="at least two options"):
        next(web_demo.run(state, "ask", QUESTION, ["only one"]))
    with pytest.raises(InputError, match="upload a clip first"):
        next(web_demo.run(web_demo.open_clip(None), "describe"))


@pytest.mark.slow
def test_web_demo_clicks_become_masks_with_sam2(web_demo, sample_clip, tmp_path):
    """With a SAM 2 tracker (a tiny random one here), points and boxes are turned into masks."""
    from garvideo.demos._common import demo_options
    from garvideo.demos.web import WebDemo
    from garvideo.errors import InputError
    from garvideo.trackers.sam2_backend import TINY_OVERRIDES, Sam2Tracker, build_sam2_model

    sam2 = Sam2Tracker(
        model=build_sam2_model(
            "configs/sam2.1/sam2.1_hiera_t.yaml", image_size=128, extra_overrides=TINY_OVERRIDES
        ),
        device="cpu",
    )
    options = demo_options(
        model=web_demo.bundle, tracker=sam2, num_frames=NUM_FRAMES, max_new_tokens=MAX_NEW_TOKENS
    )
    demo = WebDemo(options, workdir=tmp_path)
    assert demo.clicks_available and "No SAM 2 checkpoint" not in demo.banner()
    assert demo._segmenter is sam2  # clicks use the tracker's own SAM 2 model
    state = demo.open_clip(str(sample_clip.video_path))
    for mode, (x, y) in [
        ("positive point", (40, 108)),
        ("negative point", (150, 30)),
        ("box corner", (10, 80)),
        ("box corner", (70, 140)),
    ]:
        try:
            state = demo.click(state, x, y, mode, 0)
        except InputError as exc:  # random weights may segment nothing: said clearly, state kept
            assert "SAM 2 found no object there" in str(exc)
    obj = state.objects.get(0)
    if obj is not None and obj.mask is not None:
        assert obj.mask.shape == (240, 320) and obj.mask.any() and obj.source == "sam2"
    with pytest.raises(InputError, match="outside"):
        demo.click(state, 400, 10, "positive point", 0)


# ----------------------------------------------------------------------------------------------------
# user text is never markup (issue 19, item 4); the run folder goes away on exit (item 5)
# ----------------------------------------------------------------------------------------------------
_SAFE_TAGS = {"p", "strong", "em", "code", "br", "blockquote"}
INJECTED = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> <object1>'


def _rendered(markdown_text: str) -> tuple[set[str], str]:
    """The tags and the visible text of Markdown rendered to HTML (CommonMark, HTML allowed, as the page)."""
    from html.parser import HTMLParser

    from markdown_it import MarkdownIt

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.tags: set[str] = set()
            self.text: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)

        def handle_data(self, data):
            self.text.append(data)

    c = Collect()
    c.feed(MarkdownIt("commonmark", {"html": True}).render(markdown_text))
    return c.tags, "".join(c.text)


def test_toasts_show_user_text_as_typed(web_demo, sample_clip, tmp_path):
    from garvideo.demos.web import toast_html
    from garvideo.errors import InputError

    state = web_demo.upload_mask(
        web_demo.open_clip(str(sample_clip.video_path)), str(sample_clip.object_masks[0]), 0
    )
    with pytest.raises(InputError) as bad_ref:
        web_demo.check_run(state, "ask", f"Is <object0> near <object1>? {INJECTED}")
    with pytest.raises(InputError) as empty:
        web_demo.check_run(state, "ask", "   ")
    named = tmp_path / '<img src=x onerror="alert(1)">.png'
    named.write_bytes(b"not a png")
    with pytest.raises(InputError) as bad_file:
        web_demo.upload_mask(state, str(named), 1)
    for exc, shown in [
        (bad_ref.value, "refers to <object1>"),
        (empty.value, "(refer to the objects as <object0>, <object1>, …)"),
        (bad_file.value, '<img src=x onerror="alert(1)">.png'),
    ]:
        toast = toast_html(exc)
        assert "<" not in toast and ">" not in toast  # no markup at all, whatever the message holds
        import html

        assert shown in html.unescape(toast)  # ... and the text reads as typed


def test_page_markdown_has_no_markup_from_names_or_notes(web_demo, sample_clip):
    from garvideo.demos.web import md_code, md_literal

    for text in (
        INJECTED,
        "a `tick` and ``two``",
        "Masks of <object0>, <object1>",
        "*not bold* [x](javascript:y)",
    ):
        for md in (md_literal(text), md_code(text)):
            tags, visible = _rendered(md)
            assert tags <= _SAFE_TAGS and "img" not in tags and "script" not in tags and "a" not in tags
            assert visible.strip() == text.strip() or visible.strip() == text.replace("\n", " ").strip()
    state = web_demo.upload_mask(
        web_demo.open_clip(str(sample_clip.video_path)), str(sample_clip.prompt_mask), 0
    )
    updates = list(web_demo.run(state, "describe"))
    for md in (web_demo.banner(), web_demo.describe_prompts(state), updates[0].status, updates[-1].status):
        tags, visible = _rendered(md)
        assert tags <= _SAFE_TAGS, (tags, md)
    assert "Masks of <object0>, <object1> propagated" in _rendered(updates[0].status)[1]  # not cut off


def _start_demo(tiny_model, tmp, port):
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env.update(TMPDIR=str(tmp), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "garvideo.demos.web", "--model", str(tiny_model), "--tracker", "static"]
    log = open(tmp.parent / f"server-{port}.log", "wb")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO)
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        assert proc.poll() is None, (tmp.parent / f"server-{port}.log").read_text()
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return proc, log, url
        except OSError:
            pass
        assert time.monotonic() < deadline, "the web demo did not start"
        time.sleep(0.5)


def _ours(tmp: Path) -> list[str]:
    """What the demo (or Gradio) left in its TMPDIR (torch's own compile cache is not the demo's)."""
    return sorted(p.name for p in tmp.iterdir() if not p.name.startswith("torchinductor"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_web_demo_removes_its_run_folder_and_gradio_cache_on_exit(tiny_model, tmp_path, sample_clip, sig):
    pytest.importorskip("gradio")
    import signal

    import httpx

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc, log, url = _start_demo(tiny_model, tmp, _free_port())
    try:
        with open(sample_clip.video_path, "rb") as f:  # an upload: Gradio caches a copy of the clip
            r = httpx.post(
                url + "gradio_api/upload", files={"files": ("clip.mp4", f, "video/mp4")}, timeout=60
            )
        assert r.status_code == 200, r.text
        cached = Path(r.json()[0])
        assert cached.is_file() and tmp in cached.parents  # under the demo's folder in TMPDIR
        assert any(n.startswith("garvideo-web-") for n in _ours(tmp))
        proc.send_signal(getattr(signal, sig))
        assert proc.wait(timeout=60) in (0, 130, -2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=15)
        log.close()
    assert _ours(tmp) == []


@pytest.mark.browser
@pytest.mark.slow
def test_web_demo_text_prompt_candidates_in_chromium(
    browser_exe, tiny_model, tiny_sam3_dir, tmp_path_factory, sample_clip, web_demo
):
    """ "Name the object": the page runs SAM 3's detector (tiny random) on the prompt frame, lists and draws
    the candidates, the picker changes the object's mask, and describing uses it. Screenshot of the
    candidates: tests/artifacts/web_text_candidates.png."""
    from playwright.sync_api import expect, sync_playwright

    from garvideo.trackers.text import TextDetector
    from garvideo.video import open_video

    text = "the <b>swan</b> & co"  # typed as is: shown escaped, never as markup
    with open_video(sample_clip.video_path) as v:
        image = next(iter(v.frames([0])))[1]
    want = TextDetector(str(tiny_sam3_dir), device="cpu", threshold=0.0).detect(image, text)
    assert len(want.candidates) >= 2
    # What the page must say for candidate 1: the library's description of the clip with that mask.
    gv = web_demo.pipeline
    described = gv.describe(gv.prepare(sample_clip.video_path, masks=[want.candidates[1].mask], frame=0)).text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    extra = ["--sam3-checkpoint", tiny_sam3_dir, "--text-threshold", "0"]
    with _web_process(tiny_model, tmp_path_factory, extra) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url, timeout=UI_TIMEOUT_MS)
            page.locator("#video-input input[type=file]").set_input_files(str(sample_clip.video_path))
            info = page.locator("#prompt-info")
            expect(info).to_contain_text(f"{sample_clip.num_frames} frames", timeout=UI_TIMEOUT_MS)
            page.locator("#text-prompt textarea, #text-prompt input").first.fill(text)
            page.locator("#find-text").click()
            cands = page.locator("#text-candidates")
            expect(cands).to_contain_text(f"Candidates for {text} on frame 0", timeout=UI_TIMEOUT_MS)
            for c in want.candidates:
                expect(cands).to_contain_text(f"#{c.rank}: score {c.score:.3f}, area {c.area} px")
            expect(cands).to_contain_text("#0: score")
            assert cands.locator("b").count() == 0  # the typed <b> is text, not markup
            expect(info).to_contain_text(
                f"<object0> (id 1 in the video): mask of {want.candidates[0].area} px"
            )
            page.wait_for_function(
                "document.querySelector('#frame-image img').naturalWidth > 0", timeout=UI_TIMEOUT_MS
            )
            # Pick candidate 1: the object's mask is that one.
            page.locator("#text-pick input").click()
            page.get_by_role("option", name="#1", exact=True).click()
            expect(info).to_contain_text(
                f"<object0> (id 1 in the video): mask of {want.candidates[1].area} px", timeout=UI_TIMEOUT_MS
            )
            expect(cands).to_contain_text("← picked", timeout=UI_TIMEOUT_MS)
            page.wait_for_timeout(500)  # the redrawn frame
            page.locator("#frame-image").screenshot(path=str(ARTIFACTS / "web_text_candidates.png"))
            page.locator("#run").click()
            expect(page.locator("#run-info")).to_contain_text("Described in", timeout=UI_TIMEOUT_MS)
            assert page.locator("#answer textarea").input_value() == described
            assert page.locator(".toast-body.error").count() == 0
        finally:
            browser.close()


def test_web_demo_text_no_match_and_pick_logic(web_demo, sample_clip, tiny_sam3_dir):
    """The page's logic in process: candidates drawn on the frame, a pick replaces the object's mask, no
    match is a toast listing the best scores (escaped)."""
    from garvideo.demos.web import toast_html
    from garvideo.errors import InputError
    from garvideo.trackers.text import NoTextMatchError, TextDetector

    state = web_demo.open_clip(str(sample_clip.video_path))
    web_demo._detector = TextDetector(str(tiny_sam3_dir), device="cpu", threshold=0.0)
    try:
        plain = web_demo.render_frame(state)
        state = web_demo.find_text(state, "the swan", 1)
        found = state.text_found
        assert found.picked == 0 and state.text_object == 1
        np.testing.assert_array_equal(state.objects[1].mask, found.candidates[0].mask)
        drawn = web_demo.render_frame(state)
        assert (drawn != plain).any()
        state = web_demo.pick_text(state, 1)
        np.testing.assert_array_equal(state.objects[1].mask, found.candidates[1].mask)
        assert "**← picked**" in web_demo.describe_candidates(state).splitlines()[2]
        with pytest.raises(InputError, match="is not one of the"):
            web_demo.pick_text(state, 99)
        web_demo._detector = TextDetector(str(tiny_sam3_dir), device="cpu", threshold=0.99)
        with pytest.raises(NoTextMatchError) as exc:
            web_demo.find_text(state, "<i>x</i>", 0)
        shown = toast_html(exc.value)
        assert "best scores: 0." in shown and "&lt;i&gt;" in shown and "<i>" not in shown
    finally:
        web_demo._detector = None
