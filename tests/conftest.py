"""Session fixtures shared by the whole suite: the synthetic clip, the tiny GAR, the shared data."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

# Never reach for the network from a test: hub look-ups must fail fast and take the offline path.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The default dtype is "auto" (bf16 on CPUs with native bf16): tests compare float32 results, so pin it.
os.environ.setdefault("GARVIDEO_DTYPE", "float32")
os.environ.pop("GARVIDEO_VIDEO_BACKEND", None)  # tests expect "auto" to mean decord, then OpenCV
# A shell that starts the suite in the background (``make test &``) ignores SIGINT, and the ignoring is
# inherited by every subprocess: the Ctrl-C tests would then wait for a KeyboardInterrupt that never
# comes. Restore Python's default handler (the children then start with SIGINT at its default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory):
    """The synthetic sample clip (48 frames, 320x240, two objects; see garvideo.demos.sample_clip)."""
    from garvideo.demos.sample_clip import make_sample_clip

    return make_sample_clip(tmp_path_factory.mktemp("sample_clip"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny, randomly initialised GAR in the official on-disk layout (made once per session)."""
    from garvideo.model import make_tiny_model

    return Path(make_tiny_model(tmp_path_factory.mktemp("tiny_gar"), seed=0))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository (real DAVIS clips, VideoRefer mini file); skip when absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared test data not found at {SHARED} (only present in the garvideo workplace)")
    return SHARED


@pytest.fixture(scope="session")
def stripped():
    """``stripped(path) -> list[str]``: a JSONL file's lines with ``timings`` (wall times) removed from
    each record, key order otherwise kept — for comparing two runs' outputs byte for byte."""
    import json

    def strip(path: Path) -> list[str]:
        out = []
        for line in path.read_text().splitlines():
            r = json.loads(line)
            r.pop("timings")  # every record has timings: a missing one fails the test
            out.append(json.dumps(r))
        return out

    return strip


@pytest.fixture()
def run_cli(capsys):
    """``run_cli(*argv) -> (exit code, stdout, stderr)``: the ``garvideo`` console entry point in process
    (arguments may be paths)."""
    from garvideo.cli import main

    def run(*argv) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return int(exc.value.code or 0), out, err

    return run


@pytest.fixture(autouse=True)
def _no_stale_log_handlers():
    """The CLI's ``main()`` points a root ``StreamHandler`` at the stderr of the moment (a test's capture
    stream, closed after the test); drop it after each test so that a later test's log records do not
    land on a closed stream ("--- Logging error ---" in its output)."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)


@pytest.fixture(scope="session")
def tiny_sam3_dir(tmp_path_factory) -> Path:
    """A tiny random SAM 3 (detector + tracker + processors, ``garvideo make-tiny-model --kind sam3``);
    skipped where the installed transformers has no SAM 3 (4.56)."""
    from garvideo.errors import ModelUnavailableError
    from garvideo.trackers.hf_tiny import make_tiny_sam3

    try:
        return make_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3"), seed=0)
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tiny_edgetam_dir(tmp_path_factory) -> Path:
    """A tiny random EdgeTAM (``garvideo make-tiny-model --kind edgetam``); skipped without EdgeTAM (4.56)."""
    from garvideo.errors import ModelUnavailableError
    from garvideo.trackers.hf_tiny import make_tiny_edgetam

    try:
        return make_tiny_edgetam(tmp_path_factory.mktemp("tiny_edgetam"), seed=0)
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
