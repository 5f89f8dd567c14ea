#!/usr/bin/env python
"""Make a venv that runs garvideo under transformers 4.56.2, the release the official GAR code pins.

``pyproject.toml`` allows ``transformers>=4.56,<6``; ``make test`` runs the suite under the project's own
transformers (5.x) and again under the lower bound, in this venv. It sees every package of the
project's venv (a ``.pth`` file adds that venv's site-packages, after its own) and shadows only what
transformers 4.56.2 needs older or extra: tokenizers 0.22, huggingface_hub 0.36 and requests with its
dependencies (huggingface_hub 1.x dropped requests).

Usage::

    .venv/bin/python tools/compat_venv.py .venv-tf456    # then .venv-tf456/bin/python -m pytest tests
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from collections.abc import Sequence
from pathlib import Path

PINS = [
    "transformers==4.56.2",
    "tokenizers==0.22.2",
    "huggingface_hub==0.36.2",
    "requests>=2.32",
    "urllib3>=2",
    "idna",
    "certifi",
    "charset_normalizer",
]


def _ask(py: Path, code: str) -> str:
    """What ``code`` prints, run by the interpreter ``py``."""
    return subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def make_overlay_venv(target: Path, pins: Sequence[str], *, no_deps: bool = True) -> Path:
    """A fresh venv at ``target`` with ``pins`` installed, that also sees this interpreter's packages
    (after its own: the pins shadow them). Returns its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    py = target / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", *(["--no-deps"] if no_deps else []), *pins], check=True
    )
    purelib = _ask(py, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    # addsitedir (not a bare path) so that the project venv's own .pth files (the editable install of
    # garvideo) are processed too.
    ours = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "zz-project-venv.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return py


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: compat_venv.py DIR", file=sys.stderr)
        return 2
    target = Path(argv[0]).resolve()
    py = make_overlay_venv(target, PINS)
    version = _ask(py, "import transformers; print(transformers.__version__)")
    print(f"{target}: transformers {version} over {sysconfig.get_paths()['purelib']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
