"""``garvideo --version``, ``garvideo web`` and the install hints of optional extras."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import version

import pytest


def test_version_is_the_package_metadata(run_cli):
    rc, out, err = run_cli("--version")
    assert rc == 0, err
    assert out.strip() == f"garvideo {version('garvideo')}"
    import garvideo

    assert version("garvideo") == garvideo.__version__  # pyproject and the module agree


def test_web_is_listed_and_has_its_options(run_cli):
    rc, out, _ = run_cli("--help")
    assert rc == 0 and " web " in out
    rc, out, err = run_cli("web", "--help")
    assert rc == 0, err
    for flag in ("--share", "--host", "--port", "--model", "--tracker", "--sam2-checkpoint", "--flow-option"):
        assert flag in out, flag


@pytest.mark.slow
def test_web_passes_host_port_share_to_launch(run_cli, tiny_model_dir, monkeypatch):
    """The options reach the demo's launch function (the real server start is the next test)."""
    pytest.importorskip("gradio")
    from garvideo.demos import web

    seen = {}

    def fake_launch(demo, *, host, port, share):
        seen.update(host=host, port=port, share=share, model=demo.model_name, tracker=demo.pipeline.tracker)
        demo.close()

    monkeypatch.setattr(web, "launch", fake_launch)
    rc, _, err = run_cli(
        "web", "--model", tiny_model_dir, "--tracker", "flow", "--flow-option", "work_size=320",
        "--host", "0.0.0.0", "--port", "7999", "--share",
    )  # fmt: skip
    assert rc == 0, err
    assert (seen["host"], seen["port"], seen["share"]) == ("0.0.0.0", 7999, True)
    assert seen["model"] == str(tiny_model_dir)
    assert seen["tracker"].name == "flow" and seen["tracker"].options.work_size == 320


def test_web_bad_options_fail_before_loading(run_cli):
    rc, _, err = run_cli("web", "--tracker", "nope", "--model", "/nonexistent")
    assert rc == 2 and "--tracker" in err and "nope" in err
    rc, _, err = run_cli("web", "--flow-option", "no_such_key=1", "--tracker", "flow", "--model", "/x")
    assert rc == 2 and "no_such_key" in err


def test_extras_hints_say_how_to_install_from_a_clone(run_cli, monkeypatch, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ModuleNotFoundError
    rc, _, err = run_cli("web", "--model", tiny_model_dir)
    assert rc == 2
    assert "pip install -e '.[demo]'" in err and "clone" in err
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    rc, _, err = run_cli("serve", "--model", tiny_model_dir)
    assert rc == 2
    assert "pip install -e '.[serve]'" in err and "clone" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_garvideo_web_serves_the_page(tiny_model_dir, tmp_path):
    """``garvideo web`` with the tiny model starts Gradio and answers HTTP; Ctrl-C stops it cleanly."""
    pytest.importorskip("gradio")
    port = _free_port()
    from test_docs_blocks import garvideo_bindir

    exe = garvideo_bindir(tmp_path / "bin") / "garvideo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = (tmp_path / "web.log").open("w+")
    proc = subprocess.Popen(
        [str(exe), "web", "--model", str(tiny_model_dir), "--tracker", "flow", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 180
        page = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    page = r.read().decode("utf-8", "replace")
                break
            except OSError:
                time.sleep(1)
        log.seek(0)
        output = log.read()
        assert page is not None, f"no page on port {port}; output:\n{output[-3000:]}"
        assert "gradio" in page.lower()
        assert "RANDOM TINY WEIGHTS" in output  # the demo says the weights are random
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
