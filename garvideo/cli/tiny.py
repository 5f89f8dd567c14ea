"""``garvideo make-tiny-model``: write a tiny random GAR, SAM 3 or EdgeTAM for tests and smoke runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from garvideo.errors import InputError


def register(app: typer.Typer) -> None:
    """Add the ``make-tiny-model`` command to ``app``."""

    @app.command("make-tiny-model")
    def make_tiny_model_cmd(
        out_dir: Annotated[Path, typer.Argument(help="Folder to write the model to (created if missing).")],
        seed: Annotated[int, typer.Option("--seed", help="Random seed of the weights.")] = 0,
        kind: Annotated[
            str,
            typer.Option(
                "--kind",
                help="gar (pass with --model), sam3 (detector + tracker: --sam3-checkpoint, for --text and "
                "--tracker sam3) or edgetam (--edgetam-checkpoint).",
            ),
        ] = "gar",
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Write a tiny randomly initialised GAR (a few MB) in the official checkpoint layout.

        Same architecture and token ids as GAR-1B, tiny sizes; pass it with --model DIR.
        Its outputs are meaningless: it is for tests and smoke runs.

        Example: garvideo make-tiny-model /tmp/tiny-gar --seed 0; garvideo make-tiny-model --kind sam3 /tmp/tiny-sam3
        """
        if kind == "gar":
            from garvideo.model import make_tiny_model  # imports torch: not at `garvideo --help`

            folder = make_tiny_model(out_dir, seed=seed)
        elif kind in ("sam3", "edgetam"):
            from garvideo.trackers.hf_tiny import make_tiny_edgetam, make_tiny_sam3  # torch, transformers

            folder = (make_tiny_sam3 if kind == "sam3" else make_tiny_edgetam)(out_dir, seed=seed)
        else:
            raise InputError("kind", f"unknown kind {kind!r} (choose from gar, sam3, edgetam)")
        files = sorted(p.name for p in folder.iterdir() if p.is_file())
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        if as_json:
            out = {"path": str(folder), "kind": kind, "seed": seed, "files": files, "bytes": size}
            typer.echo(json.dumps(out))
        else:
            title = {"gar": "GAR", "sam3": "SAM 3", "edgetam": "EdgeTAM"}[kind]
            typer.echo(f"wrote a tiny {title} ({size / 1e6:.1f} MB) to {folder}")
