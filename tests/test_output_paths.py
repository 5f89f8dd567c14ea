"""Output paths are checked before any work (issue 19, item 3): a file in the way of a folder, a place
that cannot be written, give exit 2 and one ``error:`` line, and nothing is tracked or written."""

from __future__ import annotations

import pytest


@pytest.fixture()
def afile(tmp_path):
    p = tmp_path / "afile"
    p.write_text("a file, not a folder")
    return p


def _refused(run_cli, *argv):
    rc, out, err = run_cli(*argv)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (rc, out, err)
    return lines[0]


@pytest.mark.parametrize(
    "flags, where",
    [
        (["--rle", "{afile}/x.json"], "is a file, not a folder"),
        (["--out", "{afile}/sub"], "is a file, not a folder"),
        (["--out", "{afile}"], "--out takes a folder"),
        (["--out", "/proc/x"], "cannot be written"),
        (["--overlay", "/proc/o.mp4"], "cannot be written"),
        (["--overlay", "{tmp}/o.gif"], "unsupported --overlay format"),
        (["--rle", "{tmp}"], "is a folder"),
    ],
)
def test_track_refuses_unwritable_outputs_before_tracking(
    run_cli, sample_clip, afile, tmp_path, flags, where
):
    masks = tmp_path / "masks"
    flags = [f.format(afile=afile, tmp=tmp_path) for f in flags]
    out = [] if "--out" in flags else ["--out", masks]
    line = _refused(
        run_cli, "track", sample_clip.video_path, "--mask", sample_clip.prompt_mask, "--tracker", "static",
        *out, *flags,
    )  # fmt: skip
    assert where in line
    assert not masks.exists()  # nothing tracked, no PNG written


def test_describe_refuses_an_unwritable_overlay_before_any_work(run_cli, sample_clip, tmp_path, afile):
    line = _refused(
        run_cli, "describe", sample_clip.video_path, "--mask", sample_clip.prompt_mask, "--tracker", "static",
        "--model", tmp_path / "no-model", "--overlay", afile / "o.mp4",
    )  # fmt: skip
    assert "is a file, not a folder" in line and "no-model" not in line


def test_check_writable_creates_nothing(tmp_path):
    from garvideo.runs.outputs import check_writable

    target = tmp_path / "a" / "b" / "out.jsonl"
    assert check_writable(target) == target
    assert not (tmp_path / "a").exists() and list(tmp_path.iterdir()) == []
    check_writable(tmp_path / "c" / "d", folder=True)
    assert list(tmp_path.iterdir()) == []
