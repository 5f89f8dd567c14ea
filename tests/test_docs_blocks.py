"""Every fenced code block of README.md and docs/*.md is run, or at least parsed and checked.

Convention (for writers of the docs): a block that cannot run here — it needs real weights, a GPU, the
network, a long-running server, docker, or a fresh install — is marked by an HTML comment on the line
before its fence (blank lines between are allowed)::

    <!-- needs: weights -->
    ```bash
    garvideo describe clip.mp4 --mask mask.png
    ```

with one or more of ``weights``, ``gpu``, ``network``, ``server``, ``docker``, ``install``. Every block
gets the static checks; unmarked ``bash`` / ``python`` blocks are also run.

* ``bash``: ``bash -n``; each ``garvideo ...`` command names a real (sub)command and only options that
  command has (read from the click command itself, as ``--help`` prints them); each
  ``python -m garvideo.demos.X`` names a demo module whose ``--help`` lists every option used.
* ``python``: ``ast.parse``; every ``from garvideo... import name`` resolves.
* ``json``: every non-empty line is one JSON value (a JSONL example); batch-question lines (with
  ``video`` and ``question``) also pass :func:`garvideo.runs.questions.parse_question`.
* ``bibtex``: balanced braces, entries ``@type{key,``; ``yaml``: parses; ``text``: nothing to check.
* A block without a language, or in another language, fails: say what it is.

Run (``@pytest.mark.slow``): the unmarked bash/python blocks of one file run in order (later blocks
use what earlier ones made) in one fresh temporary folder, with ``/tmp/`` in the block replaced by that
folder, the venv's ``garvideo`` and ``python`` first on PATH, and ``HF_HUB_OFFLINE=1`` (nothing is
downloaded): with the tiny model and the sample clip, which the blocks make themselves.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NEEDS = {"weights", "gpu", "network", "server", "docker", "install"}
LANGS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python",
         "json": "json", "jsonl": "json", "bibtex": "bibtex", "yaml": "yaml", "text": "text"}  # fmt: skip

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
_NEEDS = re.compile(r"^<!--\s*needs:\s*(?P<what>[\w ,]+?)\s*-->$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str  # the fence's info word, as written
    code: str
    needs: frozenset[str]

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"

    @property
    def kind(self) -> str | None:
        return LANGS.get(self.lang)


def extract_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with the ``needs:`` marker before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        lang = (m.group("info").split() or [""])[0]
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        marker = _NEEDS.match(lines[j].strip()) if j >= 0 else None
        needs = frozenset(re.split(r"[\s,]+", marker.group("what"))) if marker else frozenset()
        body: list[str] = []
        k = i + 1
        while k < len(lines) and not (
            lines[k].strip().startswith(fence[0] * len(fence)) and not lines[k].strip().strip(fence[0])
        ):
            body.append(lines[k][indent:] if lines[k][:indent].strip() == "" else lines[k])
            k += 1
        assert k < len(lines), f"{path.relative_to(ROOT)}:{i + 1}: unclosed code fence"
        blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n", needs))
        i = k + 1
    return blocks


ALL_BLOCKS = [b for p in DOC_FILES for b in extract_blocks(p)]


# ---------------------------------------------------------------------------------------------------
# static checks
# ---------------------------------------------------------------------------------------------------
def shell_commands(code: str) -> list[list[str]]:
    """The simple commands of a shell block as token lists (continuations joined, heredoc bodies and
    comments dropped, split at ``&&``, ``||``, ``;``, ``|``)."""
    text = code.replace("\\\n", " ")
    kept: list[str] = []
    heredoc: str | None = None
    for line in text.splitlines():
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if m:
            heredoc = m.group(1)
            line = line[: m.start()]
        kept.append(line)
    out: list[list[str]] = []
    for line in kept:
        lx = shlex.shlex(line, posix=True, punctuation_chars=True)
        lx.whitespace_split = True
        lx.commenters = "#"
        cmd: list[str] = []
        for token in lx:
            if token in {"&&", "||", ";", "|", "&", "(", ")", "$(", "<", ">", ">>"}:
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(token)
        if cmd:
            out.append(cmd)
    return out


@cache
def _click_root():
    import typer.main

    from garvideo.cli import app

    return typer.main.get_command(app)


def _check_garvideo(tokens: list[str], where: str) -> None:
    command = _click_root()
    path = ["garvideo"]
    rest = tokens[1:]
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        assert name in command.commands, f"{where}: `{' '.join(path)} {name}`: no such command"
        command = command.commands[name]
        path.append(name)
    opts = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    opts |= {"--help", "-v", "-vv", "-vvv", "--verbose"}  # --help: click's; -v anywhere: main()
    if len(path) == 1:
        opts.add("--version")
    for token in rest:
        if token.startswith("-") and token != "-" and not re.fullmatch(r"-\d+(\.\d+)?", token):
            name = token.split("=", 1)[0]
            assert name in opts, f"{where}: `{' '.join(path)}` has no option {name}"


@cache
def _demo_help(module: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"python -m {module} --help failed: {proc.stderr[-500:]}"
    return proc.stdout


def _check_python_m(tokens: list[str], where: str) -> None:
    i = tokens.index("-m")
    module = tokens[i + 1]
    if not module.startswith("garvideo"):
        return
    importlib.util.find_spec(module) or pytest.fail(f"{where}: no module {module}")
    if module.startswith("garvideo.demos."):
        help_text = _demo_help(module)
        for token in tokens[i + 2 :]:
            if token.startswith("--"):
                name = token.split("=", 1)[0]
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", help_text), (
                    f"{where}: `python -m {module}` has no option {name}"
                )


def check_bash(block: Block) -> None:
    proc = subprocess.run(["bash", "-n"], input=block.code, check=False, capture_output=True, text=True)
    assert proc.returncode == 0, f"{block.where}: bash -n: {proc.stderr.strip()}"
    for tokens in shell_commands(block.code):
        while tokens and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[0]):
            tokens = tokens[1:]  # VAR=value before the command
        if not tokens:
            continue
        if tokens[0] == "garvideo":
            _check_garvideo(tokens, block.where)
        elif tokens[0] in {"python", "python3"} and "-m" in tokens:
            _check_python_m(tokens, block.where)


def check_python(block: Block) -> None:
    try:
        tree = ast.parse(block.code, filename=block.where)
    except SyntaxError as exc:
        pytest.fail(f"{block.where}: {exc}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "garvideo":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"
                ), f"{block.where}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "garvideo":
                    importlib.import_module(alias.name)


def check_json(block: Block) -> None:
    """A ``json`` block is one JSON document (e.g. a settings file) or JSON lines (batch records, each
    of which must also pass the batch parser)."""
    from garvideo.runs.questions import parse_question

    try:
        document = json.loads(block.code)
    except json.JSONDecodeError:
        pass  # not one document: JSON lines, checked line by line below
    else:
        if not (isinstance(document, dict) and {"video", "question"} <= set(document)):
            return
    for n, line in enumerate(block.code.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            pytest.fail(f"{block.where}: line {n} of the block is not one JSON value: {exc}")
        if isinstance(value, dict) and {"video", "question"} <= set(value):
            parse_question(value, base=ROOT, line=n)


def check_bibtex(block: Block) -> None:
    depth = 0
    for ch in block.code:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, f"{block.where}: unbalanced braces"
    assert depth == 0, f"{block.where}: unbalanced braces"
    entries = re.findall(r"^@(\w+)\{([^,\s]+),", block.code, re.MULTILINE)
    assert entries and len(entries) == block.code.count("\n@") + block.code.startswith("@")


def check_yaml(block: Block) -> None:
    import yaml

    yaml.safe_load(block.code)


CHECKS = {"bash": check_bash, "python": check_python, "json": check_json, "bibtex": check_bibtex,
          "yaml": check_yaml, "text": lambda block: None}  # fmt: skip


def test_blocks_were_found():
    files = {b.path for b in ALL_BLOCKS}
    assert ROOT / "README.md" in files and len(ALL_BLOCKS) >= 10, len(ALL_BLOCKS)


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.where)
def test_block_is_valid(block):
    assert block.kind is not None, (
        f"{block.where}: code block in {block.lang or 'no language'}: "
        f"give it one of {', '.join(sorted(LANGS))}"
    )
    assert block.needs <= NEEDS, f"{block.where}: unknown needs: {set(block.needs - NEEDS)}"
    CHECKS[block.kind](block)


def test_static_checks_catch_mistakes(tmp_path):
    """The checks above fail where they should (a wrapped JSONL record, a wrong option, bad syntax)."""
    page = tmp_path / "page.md"
    page.write_text(
        '```json\n{"id": "q1", "video": "a.mp4",\n "question": "x"}\n```\n\n'
        "```bash\ngarvideo describe clip.mp4 --no-such-flag\n```\n\n"
        "```bash\ngarvideo nosuchcommand x\n```\n\n"
        "```python\nfrom garvideo.masks import no_such_function\n```\n\n"
        "```python\nprint(\n```\n\n"
        "```bash\npython -m garvideo.demos.sample_clip --bogus\n```\n\n"
        "<!-- needs: weights -->\n```\ncode without a language\n```\n"
    )
    blocks = extract_blocks(page)
    assert [b.needs for b in blocks][-1] == {"weights"}
    for block in blocks:
        with pytest.raises((AssertionError, pytest.fail.Exception, ImportError)):
            test_block_is_valid(block)


# ---------------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------------
def _runnable(path: Path) -> list[Block]:
    return [b for b in extract_blocks(path) if not b.needs and b.kind in {"bash", "python"}]


RUN_FILES = [p for p in DOC_FILES if _runnable(p)]


def garvideo_bindir(folder: Path) -> Path:
    """A folder with ``garvideo`` and ``python`` for this interpreter (a venv made by
    tools/compat_venv.py has no console scripts of its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, run in (("garvideo", "-c 'import sys; from garvideo.cli import main; main()'"), ("python", "")):
        script = folder / name
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {run} "$@"\n')
        script.chmod(0o755)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("path", RUN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_blocks_run(path, tmp_path):
    bindir = garvideo_bindir(tmp_path / "bin")
    env = {
        **os.environ,
        "PATH": str(bindir) + os.pathsep + os.environ.get("PATH", ""),
        "HF_HUB_OFFLINE": "1",
        "TMPDIR": str(tmp_path),
    }
    env.pop("GARVIDEO_MODEL", None)
    for block in _runnable(path):
        code = block.code.replace("/tmp/", f"{tmp_path}/")
        if block.kind == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", code]
        else:
            script = tmp_path / f"block_{block.line}.py"
            script.write_text(code)
            cmd = [sys.executable, str(script)]
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=env, check=False, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, (
            f"{block.where} failed (exit {proc.returncode}):\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
        )
