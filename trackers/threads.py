"""Thread counts scoped to the work: set for the duration of a ``with`` block and restored after it,
so that building or running a tracker leaves the process-wide settings (torch's, OpenCV's) as they were
(``garvideo serve`` runs many requests in one process).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import cv2

#: The libraries whose CPU thread count :func:`scoped_threads` sets.
THREAD_LIBRARIES = ("torch", "opencv")


@contextmanager
def scoped_threads(threads: int | None, library: str = "torch") -> Iterator[None]:
    """Run the block with ``library``'s CPU thread count set to ``threads`` (``None``: unchanged),
    restoring the previous count on exit (also when the block raises)."""
    if threads is None:
        yield
        return
    if library == "opencv":
        get, put = cv2.getNumThreads, cv2.setNumThreads
    elif library == "torch":
        import torch  # only when torch threads are scoped: importing this module stays light

        get, put = torch.get_num_threads, torch.set_num_threads
    else:
        raise ValueError(f"unknown thread library {library!r} (choose from {', '.join(THREAD_LIBRARIES)})")
    before = get()
    put(int(threads))
    try:
        yield
    finally:
        put(before)
