"""``garvideo info``: versions, devices and locally available checkpoints."""

from __future__ import annotations

import json

import typer


def info(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of a table."),
) -> None:
    """Show package versions, compute devices and the checkpoints found locally.

    Example: garvideo info --json
    """
    from rich.console import Console
    from rich.table import Table

    from garvideo.info import collect_info

    env = collect_info()
    if as_json:
        typer.echo(json.dumps(env.to_json(), indent=2))
        return
    console = Console()
    console.print(f"python {env.python} on {env.platform}")
    table = Table(title="packages")
    table.add_column("package")
    table.add_column("version")
    for name, version in env.packages.items():
        table.add_row(name, version or "[red]not installed[/red]")
    console.print(table)
    console.print(f"devices: {', '.join(env.devices)} (torch threads: {env.torch_threads})")
    if env.checkpoints:
        ck = Table(title="checkpoints found locally")
        for col in ("kind", "name", "path", "source"):
            ck.add_column(col)
        for c in env.checkpoints:
            ck.add_row(c.kind, c.name, c.path, c.source)
        console.print(ck)
    else:
        console.print(
            "no checkpoints found locally: GAR weights download on first use (HaochenWang/GAR-1B), or set "
            "GARVIDEO_MODEL=DIR; SAM 2 needs --sam2-checkpoint PATH or GARVIDEO_SAM2_CHECKPOINT "
            "(without one, tracking uses the weight-free flow tracker)"
        )


def register(app: typer.Typer) -> None:
    app.command("info")(info)
