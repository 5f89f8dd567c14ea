"""``garvideo make-tiny-model``: write a tiny random GAR for tests and smoke runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``make-tiny-model`` command to ``app``."""

    @app.command("make-tiny-model")
    def make_tiny_model_cmd(
        out_dir: Annotated[Path, typer.Argument(help="Folder to write the model to (created if missing).")],
        seed: Annotated[int, typer.Option("--seed", help="Random seed of the weights.")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Write a tiny randomly initialised GAR (a few MB) in the official checkpoint layout.

        Same architecture and token ids as GAR-1B, tiny sizes; pass it with --model DIR.
        Its outputs are meaningless: it is for tests and smoke runs.

        Example: garvideo make-tiny-model /tmp/tiny-gar --seed 0
        """
        from garvideo.model import make_tiny_model

        folder = make_tiny_model(out_dir, seed=seed)
        files = sorted(p.name for p in folder.iterdir() if p.is_file())
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        if as_json:
            typer.echo(json.dumps({"path": str(folder), "seed": seed, "files": files, "bytes": size}))
        else:
            typer.echo(f"wrote a tiny GAR ({size / 1e6:.1f} MB) to {folder}")
