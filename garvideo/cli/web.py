"""``garvideo web``: the Gradio web demo (:mod:`garvideo.demos.web`) from the command line.

Parsing and start-up only; the page is :func:`garvideo.demos.web.build_app`, served by
:func:`garvideo.demos.web.launch`.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Annotated, Any

import typer

from garvideo.cli._options import DeviceOpt, FlowOpt, KOpt, ModelOpt, NewTokOpt, Sam2Opt, TrackerOpt

#: What the error says when Gradio is missing (garvideo is installed from a clone, not from PyPI).
GRADIO_HINT = "needs the demo extra (Gradio): pip install -e '.[demo]' in a garvideo clone"


def register(app: typer.Typer) -> None:
    """Add the ``web`` command to ``app``."""

    @app.command("web")
    def web(
        model: ModelOpt = None,
        tracker: TrackerOpt = "auto",
        sam2_checkpoint: Sam2Opt = None,
        flow_option: FlowOpt = None,
        num_frames: KOpt = 8,
        max_new_tokens: NewTokOpt = None,
        device: DeviceOpt = None,
        host: Annotated[
            str,
            typer.Option("--host", help="Address to listen on (loopback by default: this machine only)."),
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 7860,
        share: Annotated[
            bool,
            typer.Option(
                "--share",
                help="Also ask Gradio for a public *.gradio.live link (needs internet; anyone with the "
                "link can use the model).",
            ),
        ] = False,
    ) -> None:
        """Start the web demo: upload a clip, give objects by masks, clicks or boxes, see the tracks and
        the streamed description or answer.

        Prints the page's address once the model is loaded; Ctrl-C stops it.

        Example: garvideo web --model /tmp/tiny-gar --tracker flow --port 7860
        """
        from garvideo.errors import InputError

        if importlib.util.find_spec("gradio") is None:  # not imported here: web_workdir sets its cache first
            raise InputError("web", GRADIO_HINT)
        from garvideo.cli._checks import check_model_options
        from garvideo.demos.web import WebDemo, launch, web_workdir

        check_model_options(tracker, device)  # before the model loads
        tracker_spec: Any = tracker
        if flow_option:
            from garvideo.trackers import build_tracker, parse_flow_options

            options: dict[str, Any] = parse_flow_options(flow_option)
            if sam2_checkpoint is not None:
                options["sam2_checkpoint"] = str(sam2_checkpoint)
            tracker_spec = build_tracker(tracker, **options)
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        with web_workdir() as workdir:  # overlays and Gradio's cache, removed on Ctrl-C / SIGTERM
            demo = WebDemo(
                model,
                tracker=tracker_spec,
                sam2_checkpoint=sam2_checkpoint,
                num_frames=num_frames,
                max_new_tokens=256 if max_new_tokens is None else max_new_tokens,
                device=device,
                workdir=workdir / "runs",
            )
            launch(demo, host=host, port=port, share=share)
