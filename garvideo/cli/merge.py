"""``garvideo merge``: join the parts of a sharded ``garvideo batch`` or ``garvideo eval videorefer-q`` run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from garvideo.cli._runs import print_scores
from garvideo.eval.videorefer_q import merge_outputs


def merge(
    out: Annotated[
        Path, typer.Argument(help="The --out the shards were given; parts OUT.part-I-of-N.jsonl are read.")
    ],
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="Merge parts that lack records (a rank cut short); the scores are marked partial.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Join the parts of a sharded `garvideo batch` or `garvideo eval videorefer-q` run into OUT.

    Gives the same file a single run writes (input order). For benchmark predictions the merged file
    is scored too (OUT's .scores.json and .scores.md).

    Example: garvideo merge answers.jsonl
    """
    result, scores = merge_outputs(out, allow_partial=allow_partial)
    if as_json:
        payload: dict[str, Any] = {
            "out": str(result.out),
            "parts": [str(p) for p in result.parts],
            "records": result.records,
            "missing": result.missing,
        }
        if scores is not None:
            payload["scores"] = scores.to_dict()
        typer.echo(json.dumps(payload))
        return
    typer.echo(f"merged {len(result.parts)} parts ({result.records} records) into {result.out}")
    if result.partial:
        typer.echo(
            f"partial: {result.missing} records missing ("
            + ", ".join(f"{p.name} lacks {n}" for p, n in result.incomplete.items())
            + ")",
            err=True,
        )
    if scores is not None:
        print_scores(scores)


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)
