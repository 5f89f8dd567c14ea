"""The ``garvideo`` command line (typer).

Each command group lives in its own module and registers itself on the app with ``register(app)``;
this module only assembles them and maps exceptions to exit codes:

* 0 — success
* 2 — bad input (:class:`garvideo.errors.InputError`) or missing weights: one line on stderr
* 1 — internal failure
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer

from garvideo.errors import InputError, ModelUnavailableError

app = typer.Typer(
    name="garvideo",
    help="Region-level video understanding: track a masked object through a clip and describe it "
    "or answer questions about it with GAR (Grasp Any Region).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, in the order their commands are listed in --help.
_COMMAND_MODULES = ("track", "understand", "batch", "evaluate", "serve", "info", "tiny")


def _register_all() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"garvideo.cli.{name}")
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name != f"garvideo.cli.{name}":
                raise
            continue
        module.register(app)


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."),
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


_register_all()


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: runs the app and exits with the documented exit code.

    Usage errors are click's own (exit 2, with the usage line); garvideo's errors are caught here.
    """
    try:
        app(args=list(argv) if argv is not None else None, prog_name="garvideo")
    except (InputError, ModelUnavailableError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        logging.getLogger("garvideo").debug("internal failure", exc_info=True)
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc} (rerun with -vv for the traceback)", err=True
        )
        sys.exit(1)
