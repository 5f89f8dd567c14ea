"""Run mypy on the installed layout of garvideo: ``python tools/typecheck.py [mypy args]``.

The source tree maps ``trackers/``, ``eval/`` and ``demos/`` to ``garvideo.trackers`` / ``garvideo.eval`` /
``garvideo.demos`` (pyproject ``package-dir``), which mypy cannot follow from the source folders. This script
lays out that mapping as symlinks under ``build/typecheck/`` and runs ``mypy -p garvideo`` there with the
settings of ``[tool.mypy]`` in pyproject.toml; paths in the report are given relative to the project root.
Exit code: mypy's (0 when there are no errors).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"trackers": "trackers", "eval": "eval", "demos": "demos"}


def build_tree(dest: Path) -> Path:
    """``dest/garvideo``: garvideo/'s entries plus the mapped folders, all symlinks."""
    pkg = dest / "garvideo"
    pkg.mkdir(parents=True, exist_ok=True)
    for old in pkg.iterdir():
        old.unlink()
    for entry in (ROOT / "garvideo").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, folder in MAPPED.items():
        (pkg / name).symlink_to(ROOT / folder)
    return pkg


def main(argv: list[str]) -> int:
    dest = ROOT / "build" / "typecheck"
    build_tree(dest)
    config = str(ROOT / "pyproject.toml")
    cmd = [sys.executable, "-m", "mypy", "--config-file", config, "-p", "garvideo", *argv]
    env = {**os.environ, "MYPYPATH": str(dest)}
    proc = subprocess.run(cmd, check=False, cwd=dest, capture_output=True, text=True, env=env)
    prefix = {f"garvideo/{name}/": f"{folder}/" for name, folder in MAPPED.items()}
    for line in proc.stdout.splitlines():
        for src, real in prefix.items():
            if line.startswith(src):
                line = real + line[len(src):]
                break
        print(line)
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
