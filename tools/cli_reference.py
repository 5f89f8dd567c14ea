"""Write docs/cli-options.md, every command's options, from the CLI itself: ``python tools/cli_reference.py``.

``--check``: exit 1 (saying so) when the page is not what the CLI would give now; tests/test_docs_cli.py runs
that, so the page cannot fall behind a new option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import typer
from typer._click.core import Context  # typer ships its own copy of click

from garvideo.cli import _register_all, app

PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli-options.md"

HEADER = """# Every command's options

Generated from the CLI by `python tools/cli_reference.py` (a test checks it is current). How the
commands fit together, with examples: [CLI reference](cli.md). `garvideo COMMAND --help` prints the
same, with an example for each command.
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _param_row(param: Any, ctx: Any) -> str:
    """One table row: the option's names and value, as ``--help`` shows them, and its help (with default)."""
    record = param.get_help_record(ctx)
    if record is None:  # an argument: click shows those in the usage line only
        return f"| `{param.human_readable_name}` | argument{'' if param.required else ' (optional)'} |"
    names, help_text = record
    return f"| `{_cell(names)}` | {_cell(help_text)} |"


def _command_section(path: list[str], command: Any) -> list[str]:
    lines = [f"## garvideo {' '.join(path)}", ""]
    summary = (command.help or "").strip().split("\n\n")[0]
    if summary:
        lines += [" ".join(summary.split()), ""]
    ctx = Context(command, info_name=" ".join(["garvideo", *path]))
    params = [p for p in command.params if not getattr(p, "hidden", False) and p.name != "help"]
    if params:
        lines += ["| option | what it does |", "|---|---|"]
        lines += [_param_row(p, ctx) for p in params]
        lines.append("")
    return lines


def _walk(group: Any, path: list[str]) -> list[str]:
    lines: list[str] = []
    for name in sorted(group.commands):
        sub = group.commands[name]
        if sub.hidden:
            continue
        if hasattr(sub, "commands"):
            lines += _walk(sub, [*path, name])
        else:
            lines += _command_section([*path, name], sub)
    return lines


def render() -> str:
    """The page's text, from the CLI as it is now."""
    _register_all()
    root = typer.main.get_command(app)
    return HEADER + "\n" + "\n".join(_walk(root, [])).rstrip() + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether the page is current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if PAGE.read_text() != text:
            print(f"{PAGE} is out of date: run python tools/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
