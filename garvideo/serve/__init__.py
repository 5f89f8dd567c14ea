"""``garvideo serve``: an OpenAI-compatible API (``/v1/chat/completions``) for region-level video
questions, in front of :class:`garvideo.pipeline.GarVideo`.

* :mod:`garvideo.serve.schema` — the request (OpenAI's, plus ``masks`` / ``options`` / ``num_frames``
  in ``extra_body``), OpenAI-style errors and the reply / stream-chunk bodies;
* :mod:`garvideo.serve.media` — video URLs (allowed roots, uploads, content hashes) and masks;
* :mod:`garvideo.serve.prompts` — how the objects reach ``GarVideo.prepare``;
* :mod:`garvideo.serve.cache` — the prepared-clip cache;
* :mod:`garvideo.serve.app` — the FastAPI app, its queue and the model thread.

Needs the ``serve`` extra (FastAPI, uvicorn). Importing this package loads neither.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from garvideo.serve import app

        return getattr(app, name)
    raise AttributeError(name)
