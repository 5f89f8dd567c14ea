"""``garvideo web``: the Gradio web demo (:mod:`garvideo.demos.web`) from the command line.

Parsing and start-up only; the page is :func:`garvideo.demos.web.build_app`, served by
:func:`garvideo.demos.web.launch`.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Annotated

import typer

from garvideo.cli._options import (
    DeviceOpt,
    FlowOpt,
    KOpt,
    ModelOpt,
    NewTokOpt,
    Sam2Opt,
    TrackerOpt,
    garvideo_options,
)
from garvideo.errors import InputError

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
        if importlib.util.find_spec("gradio") is None:  # not imported here: web_workdir sets its cache first
            raise InputError("web", GRADIO_HINT)
        # Function-local: the page module imports the pipeline (torch); `garvideo --help` stays light.
        from garvideo.demos.web import WebDemo, launch, web_workdir

        options = garvideo_options(  # checked before the model loads
            model=model,
            tracker=tracker,
            sam2_checkpoint=sam2_checkpoint,
            flow_option=flow_option,
            num_frames=num_frames,
            device=device,
            max_new_tokens=256 if max_new_tokens is None else max_new_tokens,
        )
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        with web_workdir() as workdir:  # overlays and Gradio's cache, removed on Ctrl-C / SIGTERM
            demo = WebDemo(options, workdir=workdir / "runs")
            launch(demo, host=host, port=port, share=share)
