"""The CLI's documentation is the CLI's: docs/cli-options.md is generated from the commands and must be
current, and docs/cli.md (the guide) names every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from garvideo.cli import _register_all, app

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> dict[str, Any]:
    """``"eval score"`` -> its command object, for every visible command."""
    _register_all()
    out: dict[str, Any] = {}

    def walk(group: Any, path: list[str]) -> None:
        for name, sub in sorted(group.commands.items()):
            if sub.hidden:
                continue
            if hasattr(sub, "commands"):
                walk(sub, [*path, name])
            else:
                out[" ".join([*path, name])] = sub

    walk(typer.main.get_command(app), [])
    return out


def test_options_page_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_options_page_lists_every_option_of_every_command() -> None:
    page = (ROOT / "docs" / "cli-options.md").read_text()
    commands = _commands()
    assert {"describe", "ask", "track", "batch", "merge", "serve", "eval videorefer-q"} <= set(commands)
    for name, command in commands.items():
        assert f"## garvideo {name}\n" in page, name
        section = page.split(f"## garvideo {name}\n", 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            if getattr(param, "hidden", False) or param.param_type_name != "option":
                continue
            assert param.opts[0] in section, (name, param.opts[0])


def test_guide_names_every_command() -> None:
    guide = (ROOT / "docs" / "cli.md").read_text()
    missing = [c for c in _commands() if f"garvideo {c}" not in guide]
    assert not missing, f"docs/cli.md never shows: {missing}"
