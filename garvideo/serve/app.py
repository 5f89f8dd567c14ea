"""The ``garvideo serve`` application: an OpenAI-compatible chat-completions API in front of
:class:`garvideo.pipeline.GarVideo` (FastAPI; run by uvicorn from :mod:`garvideo.cli.serve`).

A request goes through three stages:

1. **admission** (event loop): the API key, then a slot in the bounded queue (``max_queue`` waiting
   besides the one running; full: 503 with ``Retry-After``), then the body (at most
   ``max_upload_mb``: 413) and its schema (400);
2. **checking** (a worker thread): the video URL (403 outside the allowed roots), its content hash,
   the masks (size, emptiness, object count), the ``<objectN>`` references — all before queueing, so a
   bad request is answered at once;
3. **the model** (one thread, requests in arrival order): the prepared clip from the cache (or
   :meth:`GarVideo.prepare`), then :meth:`GarVideo.describe` / :meth:`GarVideo.ask` with ``stream=``.
   Requests on one clip wait for each other in this thread, so a clip is prepared once and every
   later request on it finds it in the cache.

Generation stops when the client goes away: the ``stream=`` callback raises once the request is
marked disconnected (checked between tokens), and a request still waiting is dropped before it runs.

This module has no model or prompt logic: what the model sees is the pipeline's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import StreamingResponse

from garvideo.errors import InputError
from garvideo.serve.cache import ClipCache
from garvideo.serve.media import MediaStore, ObjectSpec, VideoSource, clip_key, decode_masks, too_large
from garvideo.serve.prompts import check_prompts, prepare_kwargs
from garvideo.serve.schema import ApiError, ChatRequest, chunk_body, completion_body, error_body, new_id

__all__ = ["ServeConfig", "create_app"]

logger = logging.getLogger(__name__)

SERVED_MODEL = "garvideo"
"""The model id the API lists and accepts (the loaded checkpoint's own name is accepted too)."""

# Where a pipeline InputError's source points in the request.
_PARAMS = {
    "--question": "messages",
    "describe": "max_tokens",
    "--option": "options",
    "--mask": "masks",
    "masks": "masks",
    "--frame": "masks",
    "--num-frames": "num_frames",
    "--max-new-tokens": "max_tokens",
}


@dataclass
class ServeConfig:
    """The server's settings (``garvideo serve`` options).

    Attributes:
        allowed_roots: folders ``file://`` URLs may point into (none: only ``data:`` URLs).
        api_key: when set, every ``/v1`` request needs ``Authorization: Bearer <api_key>``.
        max_queue: requests waiting besides the one running; more answer 503.
        max_upload_mb: the largest request body (and decoded upload) accepted.
        cache_size: prepared clips kept.
    """

    allowed_roots: list[Path] = field(default_factory=list)
    api_key: str | None = None
    max_queue: int = 32
    max_upload_mb: float = 100.0
    cache_size: int = 8

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


class ClientGone(Exception):
    """The client disconnected: generation for its request stops."""


@dataclass
class Job:
    """A checked request, ready for the model thread."""

    video: VideoSource
    frame: int
    objects: list[ObjectSpec]
    num_frames: int
    key: str
    question: str | None
    options: list[str] | None
    max_new_tokens: int
    generate_kwargs: dict[str, Any]
    notes: list[str]


class Engine:
    """One model, one thread: runs jobs in arrival order, keeps the prepared clips, counts requests."""

    def __init__(self, gv: Any, config: ServeConfig) -> None:
        self.gv = gv
        self.config = config
        self.cache = ClipCache(config.cache_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="garvideo-model")
        self._lock = threading.Lock()
        self._in_flight = 0
        self._running = False  # the model thread is working on a request
        self._stopping = threading.Event()  # set on shutdown: running and waiting requests stop
        self._seconds = 1.0  # running mean of a request's time in the model thread (for Retry-After)
        self.counts = {"served": 0, "failed": 0, "cancelled": 0, "rejected": 0}

    # -- admission ----------------------------------------------------------------------------------------
    def admit(self) -> None:
        """Take a slot (waiting or running) or raise 503 with ``Retry-After``."""
        with self._lock:
            if self._in_flight >= self.config.max_queue + 1:
                self.counts["rejected"] += 1
                retry = max(1, math.ceil(self._seconds * self._in_flight))
                raise ApiError(
                    503,
                    f"the server is busy ({self._in_flight} requests in flight, --max-queue "
                    f"{self.config.max_queue}); retry in {retry} s",
                    None,
                    "queue_full",
                    {"Retry-After": str(retry)},
                )
            self._in_flight += 1

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "in_flight": self._in_flight,
                "running": self._running,
                "max_queue": self.config.max_queue,
                "requests": dict(self.counts),
                "cache": self.cache.stats(),
            }

    # -- the model thread ---------------------------------------------------------------------------------
    def submit(self, job: Job, on_text: Callable[[str], None] | None, cancel: threading.Event) -> Future:
        return self._executor.submit(self._run, job, on_text, cancel)

    def _run(self, job: Job, on_text: Callable[[str], None] | None, cancel: threading.Event) -> Any:
        if cancel.is_set() or self._stopping.is_set():
            raise ClientGone
        t0 = time.perf_counter()
        self._running = True
        try:
            clip = self.cache.get(job.key)
            cached = clip is not None
            if clip is None:
                kwargs = prepare_kwargs(self.gv, job.objects, job.frame, job.video.path)
                clip = self.gv.prepare(job.video.path, num_frames=job.num_frames, **kwargs)
                self.cache.put(job.key, clip)

            def stream(piece: str) -> None:
                if cancel.is_set() or self._stopping.is_set():
                    raise ClientGone
                if on_text is not None:
                    on_text(piece)

            kw = {"stream": stream, "max_new_tokens": job.max_new_tokens, **job.generate_kwargs}
            if job.question is None:
                result = self.gv.describe(clip, **kw)
            else:
                result = self.gv.ask(clip, job.question, job.options, **kw)
            return result, cached
        finally:
            self._running = False
            with self._lock:
                self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - t0)

    def close(self) -> None:
        self._stopping.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.cache.clear()


# ----------------------------------------------------------------------------------------------------
# request → job
# ----------------------------------------------------------------------------------------------------
def _parse(body: bytes) -> ChatRequest:
    from pydantic import ValidationError

    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ApiError(400, f"{where}: {err['msg']}", where or None) from None


def _question_and_video(req: ChatRequest) -> tuple[str, str, list[str]]:
    """(question text of the last user message, the video URL, notes)."""
    notes: list[str] = []
    urls: list[str] = []
    for i, msg in enumerate(req.messages):
        if isinstance(msg.content, list):
            for j, part in enumerate(msg.content):
                where = f"messages[{i}].content[{j}]"
                if part.type == "video_url":
                    if part.video_url is None:
                        raise ApiError(400, f"{where}: a video_url part needs video_url.url", where)
                    urls.append(part.video_url.url)
                elif part.type == "image_url":
                    raise ApiError(
                        400,
                        f"{where}: images are not supported, garvideo answers about videos (send a video_url)",
                        where,
                    )
                elif part.type != "text":
                    raise ApiError(400, f"{where}: unsupported content part type {part.type!r}", where)
    last = req.messages[-1]
    if last.role != "user":
        raise ApiError(400, "the last message must be the user's question", "messages")
    if len(urls) != 1:
        raise ApiError(
            400, f"give exactly one video as a video_url content part (got {len(urls)})", "messages"
        )
    if isinstance(last.content, str):
        text = last.content
    else:
        text = "\n".join(p.text or "" for p in (last.content or []) if p.type == "text")
    if len(req.messages) > 1:
        notes.append(
            "only the last user message's text is used (earlier turns and system messages are ignored)"
        )
    return text.strip(), urls[0], notes


def build_job(req: ChatRequest, gv: Any, media: MediaStore) -> Job:
    """Check a request fully (video, masks, references) and turn it into a :class:`Job`."""
    from garvideo.model.prompts import MAX_REGIONS
    from garvideo.pipeline import rewrite_object_refs

    if req.n not in (None, 1):
        raise ApiError(400, "n must be 1 (one answer per request)", "n")
    question, url, notes = _question_and_video(req)
    if req.options is not None and not question:
        raise ApiError(400, "options need a question in the user message's text", "options")
    video = media.resolve(url)
    frame, objects = decode_masks(req.masks or [], video, MAX_REGIONS)
    check_prompts(gv, objects)
    if question:
        try:
            rewrite_object_refs(question, len(objects))  # unknown <objectN>: refused before queueing
        except InputError as exc:
            raise ApiError(400, exc.problem, "messages", "unknown_object") from None
    k = int(req.num_frames or gv.num_frames)
    new = req.max_completion_tokens or req.max_tokens or gv.max_new_tokens
    gen: dict[str, Any] = {}
    if req.temperature:  # 0 or absent: greedy, as GAR is evaluated
        gen = {"do_sample": True, "temperature": req.temperature}
        if req.top_p is not None:
            gen["top_p"] = req.top_p
    return Job(
        video=video,
        frame=frame,
        objects=objects,
        num_frames=k,
        key=clip_key(video, frame, objects, k),
        question=question or None,
        options=list(req.options) if req.options is not None else None,
        max_new_tokens=int(new),
        generate_kwargs=gen,
        notes=notes,
    )


def _as_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InputError):
        return ApiError(400, exc.problem, _PARAMS.get(exc.source or "", None), "bad_input")
    logger.error("internal error", exc_info=(type(exc), exc, exc.__traceback__))
    return ApiError(500, f"internal error ({type(exc).__name__}); see the server log", None, "internal_error")


def _extra(result: Any, cached: bool, notes: list[str]) -> dict[str, Any]:
    return {
        "task": "ask" if hasattr(result, "question") else "describe",
        "letter": getattr(result, "letter", None),
        "frames": [int(f) for f in result.frames],
        "objects": result.objects,
        "tracker": result.tracker,
        "model": result.model,
        "clip": "cached" if cached else "prepared",
        "notes": list(result.notes) + notes,
        "timings": {k: round(float(v), 4) for k, v in result.timings.items()},
    }


def _usage(result: Any) -> dict[str, int]:
    return {
        "prompt_tokens": int(result.prompt_tokens),
        "completion_tokens": int(result.new_tokens),
        "total_tokens": int(result.prompt_tokens + result.new_tokens),
    }


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj)}\n\n"


# ----------------------------------------------------------------------------------------------------
# the app
# ----------------------------------------------------------------------------------------------------
class _ClosingStream(StreamingResponse):
    """A streaming response that runs ``on_close`` however it ends (even if never iterated)."""

    def __init__(self, on_close: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def create_app(gv: Any, config: ServeConfig | None = None) -> Any:
    """The FastAPI app serving ``gv`` (a :class:`garvideo.pipeline.GarVideo`, model loaded or not).

    Routes: ``GET /health`` (no key needed), ``GET /v1/models``, ``POST /v1/chat/completions``.
    """
    config = config or ServeConfig()
    upload_dir = Path(tempfile.mkdtemp(prefix="garvideo-serve-"))
    engine = Engine(gv, config)
    media = MediaStore(
        config.allowed_roots, upload_dir, config.max_upload_bytes, config.max_queue + config.cache_size + 2
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        engine.close()
        media.close()
        shutil.rmtree(upload_dir, ignore_errors=True)

    app = FastAPI(title="garvideo", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    app.state.media = media

    def error_response(err: ApiError) -> Any:
        return JSONResponse(error_body(err.status, err.message, err.param, err.code), err.status, err.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Any:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        return error_response(ApiError(exc.status_code, str(exc.detail), None, None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Any:
        return error_response(_as_api_error(exc))

    def check_key(request: Request) -> None:
        if config.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), config.api_key.encode()
        ):
            raise ApiError(
                401, "missing or wrong API key (send Authorization: Bearer KEY)", None, "invalid_api_key"
            )

    def model_names() -> set[str]:
        return {SERVED_MODEL, str(gv.model_name)}

    @app.get("/health")
    async def health() -> Any:
        return {
            "status": "ok",
            "model": str(gv.model_name),
            "tracker": str(gv.tracker_name),
            **engine.status(),
        }

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        check_key(request)
        return {
            "object": "list",
            "data": [
                {
                    "id": SERVED_MODEL,
                    "object": "model",
                    "created": 0,
                    "owned_by": "garvideo",
                    "root": str(gv.model_name),
                }
            ],
        }

    async def read_body(request: Request) -> bytes:
        limit = config.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def wait_for(fut: asyncio.Future, request: Request, cancel: threading.Event) -> None:
        """Wait for ``fut``, marking the request cancelled if the client goes away meanwhile."""
        while not fut.done():
            await asyncio.wait({fut}, timeout=0.25)
            if not fut.done() and await request.is_disconnected():
                cancel.set()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        check_key(request)
        engine.admit()
        handed_over = False
        try:
            req = _parse(await read_body(request))
            if req.model not in model_names():
                raise ApiError(
                    404,
                    f"unknown model {req.model!r} (this server serves {SERVED_MODEL!r})",
                    "model",
                    "model_not_found",
                )
            job = await run_in_threadpool(build_job, req, gv, media)
            cancel = threading.Event()
            rid = new_id()
            if not req.stream:
                fut = asyncio.wrap_future(engine.submit(job, None, cancel))
                await wait_for(fut, request, cancel)
                try:
                    result, cached = fut.result()
                except ClientGone:
                    engine.count("cancelled")
                    return Response(status_code=499)
                except Exception as exc:  # noqa: BLE001 - mapped to an error reply
                    engine.count("failed")
                    raise _as_api_error(exc) from None
                engine.count("served")
                finish = "length" if result.new_tokens >= job.max_new_tokens else "stop"
                return completion_body(
                    rid, req.model, result.text, finish, _usage(result), _extra(result, cached, job.notes)
                )

            loop = asyncio.get_running_loop()
            events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

            def on_text(piece: str) -> None:
                loop.call_soon_threadsafe(events.put_nowait, ("text", piece))

            done = engine.submit(job, on_text, cancel)
            done.add_done_callback(lambda f: loop.call_soon_threadsafe(events.put_nowait, ("done", f)))

            async def next_event() -> tuple[str, Any] | None:
                while True:
                    with contextlib.suppress(asyncio.TimeoutError):
                        return await asyncio.wait_for(events.get(), 0.25)
                    if await request.is_disconnected():
                        cancel.set()
                        return None

            # Wait for the first piece (or the outcome) before answering, so an error that only the model
            # thread can find (e.g. a prompt over the context) still gets its status code.
            first = await next_event()
            if first is None:
                engine.count("cancelled")
                return Response(status_code=499)
            if first[0] == "done" and first[1].exception() is not None:
                exc = first[1].exception()
                if isinstance(exc, ClientGone):
                    engine.count("cancelled")
                    return Response(status_code=499)
                engine.count("failed")
                raise _as_api_error(exc)

            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            state = {"finished": False, "released": False, "counted": False}

            def close_stream() -> None:
                if not state["finished"]:
                    cancel.set()  # the client went away: the model thread stops at its next token
                    if not state["counted"]:
                        state["counted"] = True
                        engine.count("cancelled")
                if not state["released"]:
                    state["released"] = True
                    engine.release()

            async def sse() -> AsyncIterator[str]:
                try:
                    yield _sse(chunk_body(rid, req.model, {"role": "assistant", "content": ""}))
                    event: tuple[str, Any] | None = first
                    while event is not None and event[0] == "text":
                        yield _sse(chunk_body(rid, req.model, {"content": event[1]}))
                        event = await next_event()
                    if event is None:
                        return  # counted as cancelled by close_stream
                    try:
                        result, cached = event[1].result()
                    except ClientGone:
                        return  # counted as cancelled by close_stream
                    except Exception as exc:  # noqa: BLE001 - told to the client in the stream
                        engine.count("failed")
                        state["counted"] = True
                        err = _as_api_error(exc)
                        yield _sse(error_body(err.status, err.message, err.param, err.code))
                        yield "data: [DONE]\n\n"
                        state["finished"] = True
                        return
                    finish = "length" if result.new_tokens >= job.max_new_tokens else "stop"
                    yield _sse(
                        chunk_body(rid, req.model, {}, finish, extra=_extra(result, cached, job.notes))
                    )
                    if include_usage:
                        yield _sse(chunk_body(rid, req.model, None, usage=_usage(result)))
                    yield "data: [DONE]\n\n"
                    state["finished"] = True
                    engine.count("served")
                finally:
                    close_stream()

            handed_over = True
            return _ClosingStream(
                close_stream,
                sse(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        finally:
            if not handed_over:
                engine.release()

    return app
