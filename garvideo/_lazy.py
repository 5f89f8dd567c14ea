"""Lazy package roots (as transformers' ``_LazyModule``): a package's ``__init__`` names what it exports
and from which submodule, and a submodule is imported on first access of one of its names, so that
importing a light submodule (e.g. :mod:`garvideo.model.prompts`) does not load torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``: ``exports`` maps each exported
    name to the submodule (relative to ``package``) that defines it."""

    def __getattr__(name: str) -> Any:
        sub = exports.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{sub}"), name)
        globals_ = importlib.import_module(package).__dict__
        globals_[name] = value  # later accesses skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(exports))

    return __getattr__, __dir__
