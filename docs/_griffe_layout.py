"""griffe extension (mkdocs.yml): the repository's layout as it installs.

``trackers/``, ``eval/`` and ``demos/`` live at the repository's top level but install as
``garvideo.trackers``, ``garvideo.eval`` and ``garvideo.demos`` (``[tool.setuptools] package-dir`` in
pyproject.toml). griffe reads the source tree, where ``garvideo/`` has no such subpackages; this extension
loads each mapped folder and attaches it under ``garvideo``, so that ``::: garvideo.trackers.build_tracker``
documents what users import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import griffe

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli (a dependency of build, in the dev extra)
    import tomli as tomllib

_ROOT = Path(__file__).resolve().parents[1]


class InstalledLayout(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "garvideo":
            return
        project = tomllib.loads((_ROOT / "pyproject.toml").read_text())
        for name, folder in project["tool"]["setuptools"]["package-dir"].items():
            parent, _, child = name.rpartition(".")
            if parent != "garvideo" or child in pkg.members:
                continue
            sub = loader.load(folder, find_stubs_package=False)
            loader.modules_collection.members.pop(folder, None)  # only reachable as garvideo.<child>
            sub.name = child
            sub.parent = pkg
            pkg.set_member(child, sub)
