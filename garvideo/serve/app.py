"""The ``garvideo serve`` application: an OpenAI-compatible chat-completions API in front of
:class:`garvideo.pipeline.GarVideo` (FastAPI; run by uvicorn from :mod:`garvideo.cli.serve`).

A request goes through four stages:

1. **admission** (event loop): the API key, then a place in the bounded queue (``max_queue`` waiting
   besides the rows generating; full: 503 with ``Retry-After``), then the body (at most
   ``max_upload_mb``: 413) and its schema (400);
2. **checking** (a worker thread): the video URL (403 outside the allowed roots), its content hash,
   the masks (size, emptiness, object count), the ``<objectN>`` references — all before queueing, so a
   bad request is answered at once;
3. **preparation** (a pool of ``prepare_workers`` threads, while the model generates earlier requests):
   the prepared clip from the cache, or :meth:`GarVideo.prepare` (decode, track, encode the keyframes);
   requests on one clip arriving together wait for one preparation;
4. **the model** (one thread): the ready requests, in arrival order, answered together in one batch of
   up to ``max_batch_size`` rows by :meth:`GarVideo.run_batch` (see :class:`Engine`); each row streams
   its own text and is answered as soon as it ends.

Generation stops when the client goes away: the row's ``stream`` callback raises once the request is
marked disconnected (checked between tokens) and the row leaves its batch; a request still waiting is
dropped before it runs. ``GET /metrics`` exports the counters (:mod:`garvideo.serve.metrics`).

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
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import StreamingResponse

from garvideo.errors import InputError
from garvideo.model.prompts import MAX_REGIONS
from garvideo.pipeline import AnswerResult, GarVideo, Question, rewrite_object_refs
from garvideo.serve.cache import ClipCache
from garvideo.serve.media import MediaStore, ObjectSpec, VideoSource, clip_key, decode_masks, too_large
from garvideo.serve.metrics import CONTENT_TYPE, ServeMetrics, StatusCounter
from garvideo.serve.prompts import TextObjects, check_prompts, prepare_kwargs
from garvideo.serve.schema import ApiError, ChatRequest, chunk_body, completion_body, error_body, new_id

__all__ = ["ServeConfig", "create_app"]

logger = logging.getLogger(__name__)

SERVED_MODEL = "garvideo"
"""The model id the API lists and accepts (the loaded checkpoint's own name is accepted too)."""

#: Library field (a pipeline :class:`~garvideo.errors.InputError`'s ``source``) -> the request parameter
#: it comes from (the OpenAI error's ``param``). A source not listed gives ``param: null``.
API_PARAMS: dict[str, str] = {
    "question": "messages",
    "options": "options",
    "masks": "masks",
    "frame": "masks",
    "points": "masks",
    "box": "masks",
    "text": "masks",
    "text_pick": "masks",
    "num_frames": "num_frames",
    "max_new_tokens": "max_tokens",
    "describe": "max_tokens",  # the token budget of a description: its prompt and max_tokens
}


DEFAULT_MAX_BATCH_SIZE = 8
"""Rows generated together by default (``--max-batch-size``; see docs/serve.md for the measurement)."""


@dataclass
class ServeConfig:
    """The server's settings (``garvideo serve`` options).

    Attributes:
        allowed_roots: folders ``file://`` URLs may point into (none: only ``data:`` URLs).
        api_key: when set, every ``/v1`` request needs ``Authorization: Bearer <api_key>``.
        max_queue: requests waiting besides those generating (and, while the model is idle, besides the
            next batch); more answer 503.
        max_upload_mb: the largest request body (and decoded upload) accepted.
        cache_size: prepared clips kept.
        max_batch_size: the most requests generated together in one batch (1: one at a time).
        batch_wait_ms: how long a batch waits for more requests to be ready, at most, while others are
            on their way (admitted and being checked or prepared, or fewer ready than the last batch had
            rows); it starts at once when nothing else is expected.
        prepare_workers: threads preparing requests (video decoding, tracking, keyframe encoding) while
            the model generates.
        sam3_checkpoint, text_threshold: SAM 3's concept detector for ``{"text": ...}`` objects (built on
            the first such request; ``None``: ``$GARVIDEO_SAM3_CHECKPOINT``, else ``facebook/sam3``).
        text_detector: an already built :class:`garvideo.trackers.text.TextDetector` (tests).
    """

    allowed_roots: list[Path] = field(default_factory=list)
    api_key: str | None = None
    max_queue: int = 32
    max_upload_mb: float = 100.0
    cache_size: int = 8
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_wait_ms: float = 30.0
    prepare_workers: int = 2
    sam3_checkpoint: str | None = None
    text_threshold: float = 0.5
    text_detector: Any = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


class ClientGone(Exception):
    """The client disconnected: generation for its request stops."""


@dataclass
class Job:
    """A checked request, ready to be prepared and answered."""

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
    text_found: list[Any] = field(default_factory=list)  # TextDetection of each text object


@dataclass(eq=False)
class Ticket:
    """An admitted request's place in the server: ``waiting`` (checked, prepared or ready), ``running``
    (a row of the batch being generated), ``finished`` (its row ended), ``released`` (answer sent)."""

    t_admit: float
    state: str = "waiting"


@dataclass(eq=False)
class Task:
    """A job on its way through the preparation pool and the model thread; ``future`` gets
    ``(result, cached)`` or the error."""

    job: Job
    ticket: Ticket
    on_text: Callable[[str], None] | None
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    clip: Any = None
    cached: bool = False
    first_text: bool = False
    engine: Any = None

    def cancel(self) -> None:
        """The client went away: the request leaves its queue or its batch row (at its next token)."""
        self.cancelled.set()
        if self.engine is not None:
            self.engine.wake()


class Engine:
    """One model, one model thread; requests prepared by a worker pool and generated in batches.

    A request is admitted (or 503), checked, then handed to :meth:`submit`: a preparation worker finds its
    clip in the cache or prepares it (decode, track, encode; one preparation per clip key even when
    several requests on it arrive together) while the model thread generates earlier requests. The model
    thread takes the ready requests in arrival order, up to ``max_batch_size`` greedy ones (waiting up to
    ``batch_wait_ms`` for more while others are still being prepared), and answers them together with
    :meth:`GarVideo.run_batch`: each row streams its own text, a row that ends early is answered at once
    and leaves the batch, a cancelled row leaves at its next token. Sampled requests (``temperature`` > 0)
    are generated alone. New requests wait for the running batch to end (batch at a time: rows do not
    join a running batch).
    """

    def __init__(self, gv: GarVideo, config: ServeConfig) -> None:
        if config.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {config.max_batch_size}")
        if config.prepare_workers < 1:
            raise ValueError(f"prepare_workers must be >= 1, got {config.prepare_workers}")
        self.gv = gv
        self.config = config
        self.cache = ClipCache(config.cache_size)
        self._prep = ThreadPoolExecutor(
            max_workers=config.prepare_workers, thread_name_prefix="garvideo-prepare"
        )
        # The static and flow trackers open a session per call (they may track in parallel); any other
        # (SAM 2's predictor keeps model-side state) tracks one clip at a time.
        parallel = gv.tracker_name in ("static", "flow")
        self._track_lock: Any = contextlib.nullcontext() if parallel else threading.Lock()
        self._cond = threading.Condition()
        self._ready: list[Task] = []
        self._preparing: dict[str, Future] = {}  # clip key -> its preparation in progress
        self._in_flight = 0
        self._waiting = 0  # admitted, not yet generating
        self._running = 0  # rows of the batch being generated
        self._stopping = threading.Event()  # set on shutdown: running and waiting requests stop
        self._seconds = 1.0  # running mean of a batch's time in the model thread (for Retry-After)
        self._last_rows = 0  # rows of the last batch: their clients may be about to send again
        self.counts = {"served": 0, "failed": 0, "cancelled": 0, "rejected": 0}
        self.metrics = ServeMetrics(
            {
                "garvideo_queue_depth": ("Requests admitted and not yet generating", lambda: self._waiting),
                "garvideo_running_rows": ("Rows of the batch being generated", lambda: self._running),
                "garvideo_in_flight": ("Requests admitted and not yet answered", lambda: self._in_flight),
                "garvideo_clip_cache_clips": ("Prepared clips kept", lambda: len(self.cache)),
                "garvideo_clip_cache_hits": ("Clip cache hits since start", lambda: self.cache.hits),
                "garvideo_clip_cache_misses": ("Clip cache misses since start", lambda: self.cache.misses),
            }
        )
        self._thread = threading.Thread(target=self._loop, name="garvideo-model", daemon=True)
        self._thread.start()

    # -- admission ----------------------------------------------------------------------------------------
    def admit(self) -> Ticket:
        """Take a place (waiting) or raise 503 with ``Retry-After``."""
        with self._cond:
            idle_rows = self.config.max_batch_size if self._running == 0 else 0
            if self._waiting >= self.config.max_queue + idle_rows:
                self.counts["rejected"] += 1
                self.metrics.outcomes.labels("rejected").inc()
                batches = math.ceil((self._waiting + 1) / self.config.max_batch_size)
                retry = max(1, math.ceil(self._seconds * batches))
                raise ApiError(
                    503,
                    f"the server is busy ({self._in_flight} requests in flight, {self._waiting} waiting, "
                    f"--max-queue {self.config.max_queue}); retry in {retry} s",
                    None,
                    "queue_full",
                    {"Retry-After": str(retry)},
                )
            self._in_flight += 1
            self._waiting += 1
            return Ticket(time.perf_counter())

    def release(self, ticket: Ticket) -> None:
        """The request is answered (or failed, or its client left)."""
        with self._cond:
            if ticket.state in ("released", "running-released"):
                return
            if ticket.state == "waiting":
                self._waiting -= 1
            ticket.state = "released" if ticket.state != "running" else "running-released"
            self._in_flight -= 1
            self._cond.notify_all()

    def count(self, what: str) -> None:
        with self._cond:
            self.counts[what] += 1
        self.metrics.outcomes.labels(what).inc()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {
                "in_flight": self._in_flight,
                "running": self._running > 0,
                "running_rows": self._running,
                "waiting": self._waiting,
                "ready": len(self._ready),
                "max_queue": self.config.max_queue,
                "max_batch_size": self.config.max_batch_size,
                "requests": dict(self.counts),
                "cache": self.cache.stats(),
            }

    # -- preparation (worker pool) ------------------------------------------------------------------------
    def submit(self, job: Job, on_text: Callable[[str], None] | None, ticket: Ticket) -> Task:
        """Prepare ``job`` in the pool, then answer it in a batch; the task's future gets the outcome."""
        task = Task(job, ticket, on_text, engine=self)
        if self._stopping.is_set():
            task.future.set_exception(ClientGone())
            return task
        try:
            self._prep.submit(self._prepare, task)
        except RuntimeError:  # shut down meanwhile
            task.future.set_exception(ClientGone())
        return task

    def _prepare(self, task: Task) -> None:
        try:
            if task.cancelled.is_set() or self._stopping.is_set():
                raise ClientGone
            task.clip, task.cached = self._clip_for(task.job)
        except BaseException as exc:  # noqa: BLE001 - the request's outcome
            self._finish(task, exc)
            return
        with self._cond:
            self._ready.append(task)
            self._cond.notify_all()

    def _clip_for(self, job: Job) -> tuple[Any, bool]:
        """The job's prepared clip, held for the job (``True``: it was in the cache or prepared by another
        request meanwhile)."""
        while True:
            mine = other = None
            with self._cond:
                clip = self.cache.acquire(job.key)
                if clip is not None:
                    return clip, True
                other = self._preparing.get(job.key)
                if other is None:
                    mine = self._preparing[job.key] = Future()
            if other is not None:
                with contextlib.suppress(BaseException):
                    other.result()  # then look again (a failed preparation is retried: its own error)
                continue
            try:
                with self._track_lock:
                    kwargs = prepare_kwargs(self.gv, job.objects, job.frame, job.video.path)
                    clip = self.gv.prepare(job.video.path, num_frames=job.num_frames, **kwargs)
                self.cache.put(job.key, clip, hold=True)
                return clip, False
            finally:
                with self._cond:
                    self._preparing.pop(job.key, None)
                mine.set_result(None)  # type: ignore[union-attr]

    # -- the model thread ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
                if batch is None:
                    return
                for t in batch:
                    if t.ticket.state == "waiting":
                        self._waiting -= 1
                        t.ticket.state = "running"
                self._running = len(batch)
            self._run(batch)

    def _drop_cancelled(self) -> None:
        """Under the lock: requests whose client left before their batch are answered ``ClientGone``."""
        gone = [t for t in self._ready if t.cancelled.is_set() or self._stopping.is_set()]
        if gone:
            self._ready = [t for t in self._ready if t not in gone]
            for t in gone:
                self._finish(t, ClientGone())

    def _next_batch(self) -> list[Task] | None:
        """Under the lock: the next batch (``None`` on shutdown)."""
        while True:
            self._drop_cancelled()
            if self._stopping.is_set():
                return None
            if self._ready:
                break
            self._cond.wait()
        first = self._ready[0]
        if first.job.generate_kwargs:  # sampling: generated alone
            self._ready.pop(0)
            return [first]
        limit = self.config.max_batch_size
        deadline = time.monotonic() + self.config.batch_wait_ms / 1000
        while True:
            greedy = [t for t in self._ready if not t.job.generate_kwargs]
            coming = self._waiting - len(self._ready)  # admitted, still being checked or prepared
            # Wait (at most batch_wait_ms) while requests are on their way: admitted ones still being
            # prepared, or fewer ready than the last batch had rows (clients answered a moment ago send
            # their next request now). A lone client is never kept waiting.
            expected = coming > 0 or len(greedy) < self._last_rows
            left = deadline - time.monotonic()
            if len(greedy) >= limit or not expected or left <= 0 or self._stopping.is_set():
                break
            self._cond.wait(left)
            self._drop_cancelled()
        batch = [t for t in self._ready if not t.job.generate_kwargs][:limit]
        if not batch:  # every greedy one was cancelled meanwhile
            return self._next_batch()
        self._ready = [t for t in self._ready if t not in batch]
        return batch

    def _stream_fn(self, task: Task) -> Callable[[str], None]:
        def stream(piece: str) -> None:
            if task.cancelled.is_set() or self._stopping.is_set():
                raise ClientGone
            if task.on_text is not None:
                if not task.first_text:
                    task.first_text = True
                    self.metrics.first_token_seconds.observe(time.perf_counter() - task.ticket.t_admit)
                task.on_text(piece)

        return stream

    def _run(self, batch: list[Task]) -> None:
        t0 = time.perf_counter()
        self.metrics.batch_rows.observe(len(batch))
        for t in batch:
            self.metrics.queue_seconds.observe(t0 - t.ticket.t_admit)
        try:
            if len(batch) == 1 and batch[0].job.generate_kwargs:
                t = batch[0]
                kw: dict[str, Any] = {"stream": self._stream_fn(t), "max_new_tokens": t.job.max_new_tokens}
                kw.update(t.job.generate_kwargs)
                if t.job.question is None:
                    result = self.gv.describe(t.clip, **kw)
                else:
                    result = self.gv.ask(t.clip, t.job.question, t.job.options, **kw)
                self._finish(t, result)
            else:
                questions = [
                    Question(t.clip, t.job.question, t.job.options, t.job.max_new_tokens, self._stream_fn(t))
                    for t in batch
                ]
                self.gv.run_batch(
                    questions,
                    batch_size=len(questions),
                    return_exceptions=True,
                    on_result=lambda i, outcome: self._finish(batch[i], outcome),
                )
        except BaseException as exc:  # noqa: BLE001 - every row not answered yet gets the error
            for t in batch:
                self._finish(t, exc)
        finally:
            for t in batch:  # nothing is left unanswered
                self._finish(t, RuntimeError("the request was not answered"))
            with self._cond:
                self._running = 0
                self._last_rows = len(batch)
                self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - t0)

    def _finish(self, task: Task, outcome: Any) -> None:
        """The request's outcome (once): its row leaves the batch, its clip is let go, its future is set."""
        if task.future.done():
            return
        with self._cond:
            if task.ticket.state in ("running", "running-released"):
                self._running -= 1
                task.ticket.state = "finished" if task.ticket.state == "running" else "released"
            self._cond.notify_all()
        if task.clip is not None:
            self.cache.release(task.clip)
        self.metrics.request_seconds.observe(time.perf_counter() - task.ticket.t_admit)
        if isinstance(outcome, BaseException):
            if task.cancelled.is_set() and not isinstance(outcome, ClientGone):
                outcome = ClientGone()
            task.future.set_exception(outcome)
        else:
            self.metrics.generated_tokens.inc(int(outcome.new_tokens))
            self.metrics.prompt_tokens.inc(int(outcome.prompt_tokens))
            task.future.set_result((outcome, task.cached))

    def close(self) -> None:
        self._stopping.set()
        self.wake()
        self._prep.shutdown(wait=True, cancel_futures=True)
        self._thread.join()
        with self._cond:
            left, self._ready = self._ready, []
        for t in left:
            self._finish(t, ClientGone())
        self.cache.clear()


# ----------------------------------------------------------------------------------------------------
# request → job
# ----------------------------------------------------------------------------------------------------
def _parse(body: bytes) -> ChatRequest:
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


def build_job(req: ChatRequest, gv: GarVideo, media: MediaStore, texts: TextObjects | None = None) -> Job:
    """Check a request fully (video, masks, references) and turn it into a :class:`Job`."""
    if req.n not in (None, 1):
        raise ApiError(400, "n must be 1 (one answer per request)", "n")
    question, url, notes = _question_and_video(req)
    if req.options is not None and not question:
        raise ApiError(400, "options need a question in the user message's text", "options")
    video = media.resolve(url)
    frame, objects = decode_masks(req.masks or [], video, MAX_REGIONS)
    found: list[Any] = []
    if any(o.kind == "text" for o in objects):
        objects, found = (texts or TextObjects()).resolve(objects, frame, video.path)
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
        text_found=found,
    )


def _as_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InputError):
        return ApiError(400, exc.problem, API_PARAMS.get(exc.source or ""), "bad_input")
    logger.error("internal error", exc_info=(type(exc), exc, exc.__traceback__))
    return ApiError(500, f"internal error ({type(exc).__name__}); see the server log", None, "internal_error")


def _extra(result: Any, cached: bool, notes: list[str], text_found: Any = ()) -> dict[str, Any]:
    extra = {
        "task": "ask" if isinstance(result, AnswerResult) else "describe",
        "letter": getattr(result, "letter", None),
        "frames": [int(f) for f in result.frames],
        "objects": result.objects,
        "tracker": result.tracker,
        "model": result.model,
        "clip": "cached" if cached else "prepared",
        "notes": list(result.notes) + notes,
        "timings": {k: round(float(v), 4) for k, v in result.timings.items()},
    }
    if text_found:  # the candidates of {"text": ...} objects (a garvideo extension, docs/text-prompts.md)
        extra["text_prompts"] = [det.to_json() for det in text_found]
    return extra


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


def create_app(gv: GarVideo, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``gv`` (a :class:`garvideo.pipeline.GarVideo`, model loaded or not).

    Routes: ``GET /health`` and ``GET /metrics`` (Prometheus text; no key needed), ``GET /v1/models``,
    ``POST /v1/chat/completions``.
    """
    config = config or ServeConfig()
    upload_dir = Path(tempfile.mkdtemp(prefix="garvideo-serve-"))
    engine = Engine(gv, config)
    texts = TextObjects(
        config.sam3_checkpoint, config.text_threshold, getattr(gv, "device", None), config.text_detector
    )
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
    app.add_middleware(StatusCounter, counter=engine.metrics.http, path="/v1/chat/completions")

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

    @app.get("/metrics")
    async def metrics() -> Any:
        return Response(engine.metrics.render(), media_type=CONTENT_TYPE)

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

    async def wait_for(fut: asyncio.Future, request: Request, task: Task) -> None:
        """Wait for ``fut``, cancelling the request if the client goes away meanwhile."""
        while not fut.done():
            await asyncio.wait({fut}, timeout=0.25)
            if not fut.done() and await request.is_disconnected():
                task.cancel()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        check_key(request)
        ticket = engine.admit()
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
            job = await run_in_threadpool(build_job, req, gv, media, texts)
            rid = new_id()
            if not req.stream:
                task = engine.submit(job, None, ticket)
                fut = asyncio.wrap_future(task.future)
                await wait_for(fut, request, task)
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
                    rid,
                    req.model,
                    result.text,
                    finish,
                    _usage(result),
                    _extra(result, cached, job.notes, job.text_found),
                )

            loop = asyncio.get_running_loop()
            events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

            def on_text(piece: str) -> None:
                loop.call_soon_threadsafe(events.put_nowait, ("text", piece))

            task = engine.submit(job, on_text, ticket)
            task.future.add_done_callback(lambda f: loop.call_soon_threadsafe(events.put_nowait, ("done", f)))

            async def next_event() -> tuple[str, Any] | None:
                while True:
                    with contextlib.suppress(asyncio.TimeoutError):
                        return await asyncio.wait_for(events.get(), 0.25)
                    if await request.is_disconnected():
                        task.cancel()
                        return None

            # Wait for the first piece (or the outcome) before answering, so an error that only the model
            # thread can find (e.g. a prompt over the context) still gets its status code.
            first = await next_event()
            if first is None:
                engine.count("cancelled")
                return Response(status_code=499)
            if first[0] == "done" and first[1].exception() is not None:
                failure = first[1].exception()
                if isinstance(failure, ClientGone):
                    engine.count("cancelled")
                    return Response(status_code=499)
                engine.count("failed")
                raise _as_api_error(failure)

            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            state = {"finished": False, "released": False, "counted": False}

            def close_stream() -> None:
                if not state["finished"]:
                    task.cancel()  # the client went away: its row stops at its next token
                    if not state["counted"]:
                        state["counted"] = True
                        engine.count("cancelled")
                if not state["released"]:
                    state["released"] = True
                    engine.release(ticket)

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
                        chunk_body(
                            rid,
                            req.model,
                            {},
                            finish,
                            extra=_extra(result, cached, job.notes, job.text_found),
                        )
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
                engine.release(ticket)

    return app
