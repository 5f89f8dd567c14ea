"""``garvideo serve``: the OpenAI-compatible API (:mod:`garvideo.serve`) on uvicorn.

Parsing, start-up and printing only; the app is :func:`garvideo.serve.create_app`.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from garvideo.cli._options import (
    DeviceOpt,
    DtypeOpt,
    FlowOpt,
    KeyframesOpt,
    KOpt,
    ModelOpt,
    NewTokOpt,
    RoiOpt,
    Sam2Opt,
    Sam3Opt,
    TextThresholdOpt,
    TrackerOpt,
    garvideo_options,
)
from garvideo.errors import InputError
from garvideo.serve.launch import bind_socket


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""

    @app.command("serve")
    def serve(
        model: ModelOpt = None,
        host: Annotated[
            str, typer.Option("--host", help="Address to listen on (loopback by default; others need care).")
        ] = "127.0.0.1",
        port: Annotated[
            int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")
        ] = 8000,
        allowed_root: Annotated[
            list[Path] | None,
            typer.Option(
                "--allowed-root",
                help="Folder file:// video URLs may point into (repeat). None: only data: URLs are accepted.",
                show_default=False,
            ),
        ] = None,
        api_key: Annotated[
            str | None,
            typer.Option(
                "--api-key",
                envvar="GARVIDEO_API_KEY",
                help="Require 'Authorization: Bearer KEY' on /v1 requests (default: $GARVIDEO_API_KEY).",
                show_default=False,
            ),
        ] = None,
        tracker: TrackerOpt = "auto",
        sam2_checkpoint: Sam2Opt = None,
        flow_option: FlowOpt = None,
        num_frames: KOpt = 8,
        keyframes: KeyframesOpt = "uniform",
        roi_mode: RoiOpt = "official",
        device: DeviceOpt = None,
        dtype: DtypeOpt = None,
        max_new_tokens: NewTokOpt = None,
        max_queue: Annotated[
            int,
            typer.Option(
                "--max-queue", min=0, help="Requests waiting besides those generating; more get 503."
            ),
        ] = 32,
        max_batch_size: Annotated[
            int,
            typer.Option(
                "--max-batch-size",
                min=1,
                help="Most concurrent requests generated together in one batch (1: one at a time).",
            ),
        ] = 8,
        batch_wait_ms: Annotated[
            float,
            typer.Option(
                "--batch-wait-ms",
                min=0.0,
                help="Longest wait for more requests to join a batch while others are still being prepared.",
            ),
        ] = 30.0,
        prepare_workers: Annotated[
            int,
            typer.Option(
                "--prepare-workers",
                min=1,
                help="Threads preparing requests (decode, track, encode) while the model generates.",
            ),
        ] = 2,
        sam3_checkpoint: Sam3Opt = None,
        text_threshold: TextThresholdOpt = 0.5,
        max_upload_mb: Annotated[
            float,
            typer.Option("--max-upload-mb", min=0.001, help="Largest request body (data: URL videos), MB."),
        ] = 100.0,
        cache_size: Annotated[
            int,
            typer.Option(
                "--cache-size", min=1, help="Prepared clips kept (tracking, features, prompt prefix)."
            ),
        ] = 8,
    ) -> None:
        """Serve GAR over an OpenAI-compatible API: POST /v1/chat/completions, GET /v1/models, GET /health.

        A request gives a video (video_url: file:// under --allowed-root, or data:video/mp4;base64,...),
        the objects in extra_body.masks (COCO RLE or base64 PNG) and a question about <object0>, ...
        (no text: a description). Answers stream with stream=true. Concurrent requests are prepared in
        parallel and generated together in batches (--max-batch-size); GET /metrics is Prometheus text.
        Prints 'listening on http://HOST:PORT' on stderr once the model is loaded.

        Example: garvideo serve --model /tmp/tiny-gar --allowed-root ~/videos --port 8000
        """
        try:  # function-local: the serve extra is optional, and `garvideo --help` stays light
            import prometheus_client  # noqa: F401 - GET /metrics
            import uvicorn

            from garvideo.serve import ServeConfig, create_app
        except ModuleNotFoundError as exc:
            raise InputError(
                "serve",
                f"needs the serve extra ({exc.name} is missing): pip install -e '.[serve]' in a garvideo clone",
            ) from None
        from garvideo.options import build_garvideo  # imports the pipeline (torch)

        options = garvideo_options(  # checked before the model loads
            model=model,
            tracker=tracker,
            sam2_checkpoint=sam2_checkpoint,
            flow_option=flow_option,
            num_frames=num_frames,
            keyframes=keyframes,
            roi_mode=roi_mode,
            device=device,
            dtype=dtype,
            max_new_tokens=max_new_tokens,
        )
        roots = []
        for root in allowed_root or []:
            if not root.is_dir():
                raise InputError(root, "--allowed-root must be an existing folder")
            roots.append(root.resolve())
        gv = build_garvideo(options).load()  # the model and the tracker ("auto" resolves), before listening
        config = ServeConfig(
            allowed_roots=roots,
            api_key=api_key or None,
            max_queue=max_queue,
            max_upload_mb=max_upload_mb,
            cache_size=cache_size,
            max_batch_size=max_batch_size,
            batch_wait_ms=batch_wait_ms,
            prepare_workers=prepare_workers,
            sam3_checkpoint=sam3_checkpoint,
            text_threshold=text_threshold,
        )
        sock = bind_socket(host, port)
        bound_host, bound_port = sock.getsockname()[:2]
        if not _is_loopback(host) and not api_key:
            typer.echo(
                f"warning: listening on {host} without --api-key: anyone who can reach it can use it",
                err=True,
            )
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        typer.echo(
            f"garvideo serve: listening on http://{shown}:{bound_port} (model {gv.model_name}, tracker "
            f"{gv.tracker_name}, allowed roots: {', '.join(map(str, roots)) or 'none (data: URLs only)'})",
            err=True,
        )
        sys.stderr.flush()
        level = "info" if logging.getLogger().getEffectiveLevel() <= logging.INFO else "warning"  # -v
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(gv, config),
                log_level=level,
                access_log=level == "info",
                lifespan="on",
                timeout_graceful_shutdown=5,
            )
        )
        server.run(sockets=[sock])
