"""The run commands' shared helpers (garvideo.cli._runs): the pipeline of a run, exit codes for failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from garvideo.cli._runs import exit_for_failures, run_pipeline
from garvideo.errors import InputError
from garvideo.pipeline.settings import PipelineSettings
from garvideo.runs.loop import RunSummary
from garvideo.runs.shards import Shard


def test_run_pipeline_builds_through_the_options_and_loads_nothing(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    gv = run_pipeline(
        "org/model", "flow", ["work_size=320"], 3, "uniform", "corrected", None, "cpu", "float32"
    )
    assert not gv.model_loaded and gv.tracker_name == "flow" and gv.device == "cpu"
    assert gv.settings == PipelineSettings(num_frames=3, roi_mode="corrected")  # default max_new_tokens
    assert gv.tracker_options == {"work_size": 320}
    gv = run_pipeline(None, "static", None, 8, "uniform", "official", 5, None, None)
    assert gv.settings.max_new_tokens == 5
    with pytest.raises(InputError) as exc:
        run_pipeline(None, "static", None, 0, "uniform", "official", None, None, None)
    assert exc.value.source == "num_frames"  # a field; the CLI prints --num-frames


def test_exit_codes_for_failed_items(tmp_path, capsys):
    out = Path(tmp_path / "a.jsonl")
    exit_for_failures(RunSummary(out=out, shard=Shard(), total=3), "questions")  # none failed: returns
    with pytest.raises(typer.Exit) as ex:
        exit_for_failures(RunSummary(out=out, shard=Shard(), total=3, failed_total=1), "questions")
    assert ex.value.exit_code == 3 and "1 of 3 questions failed" in capsys.readouterr().err
    with pytest.raises(InputError, match="all 3 questions failed"):
        exit_for_failures(RunSummary(out=out, shard=Shard(), total=3, failed_total=3), "questions")
