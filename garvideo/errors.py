"""Exceptions shared by the whole package.

Every error a user can cause by what they pass in (a file, a flag, a record) is an
:class:`InputError`: the CLI prints it as one line ``error: <source>: <problem>`` and exits 2.
Anything else is a bug or an environment failure and exits 1.
"""

from __future__ import annotations

import os
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


class GarVideoError(Exception):
    """Base class of garvideo's own exceptions."""


class InputError(GarVideoError, ValueError):
    """Bad user input: names the offending file (or option / record) and what is wrong with it.

    Args:
        source: the file path, option name or record id the problem is in (``None`` if none applies).
        problem: a short, lower-case description of what is wrong (no trailing period).
    """

    def __init__(self, source: PathLike | None, problem: str) -> None:
        self.source = None if source is None else os.fspath(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if self.source is not None else problem)


class ModelUnavailableError(GarVideoError, RuntimeError):
    """Model weights cannot be found or downloaded (offline, nothing on disk).

    The message says how to get them; the CLI exits 2 with it.
    """
