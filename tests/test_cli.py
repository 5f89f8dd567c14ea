"""The CLI shell: every command documents an example, exit codes, `info`."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from garvideo.cli import app

runner = CliRunner()


def _commands(group, prefix=()):
    import typer.main

    click_group = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, cmd in click_group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,)


def test_every_command_has_help_with_an_example():
    commands = list(_commands(app))
    assert ("info",) in commands
    for cmd in commands:
        result = runner.invoke(app, [*cmd, "--help"], terminal_width=200)
        assert result.exit_code == 0, (cmd, result.output)
        assert "Example:" in result.output and "garvideo" in result.output, cmd


def test_info_json_runs_as_a_console_script():
    out = subprocess.run(
        [sys.executable, "-c", "from garvideo.cli import main; main()", "info", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["packages"]["torch"] and "cpu" in data["devices"]
    assert isinstance(data["checkpoints"], list)


def _run(*argv):
    return subprocess.run(
        [sys.executable, "-c", "from garvideo.cli import main; main()", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_usage_errors_exit_2():
    out = _run("no-such-command")
    assert out.returncode == 2 and "No such command" in out.stderr
    out = _run()
    assert out.returncode == 2 and "Usage" in out.stdout + out.stderr


def test_bad_input_is_one_line_exit_2(tmp_path):
    out = _run("track", str(tmp_path / "missing.mp4"), "--mask", str(tmp_path / "m.png"), "--json")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.mp4" in lines[0] and lines[0].startswith("error: ")


def test_top_level_api_is_lazy():
    code = (
        "import sys, garvideo; assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "from garvideo import GarVideo, DescribeResult, AnswerResult; print(GarVideo.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("garvideo.pipeline")
