"""The ``garvideo`` command line (typer).

Each command group lives in its own module and registers itself on the app with ``register(app)``;
this module only assembles them and maps exceptions to exit codes:

* 0 — success, every item done
* 2 — bad input (:class:`garvideo.errors.InputError`, a usage error, missing weights, or every item of
  a batch / eval run failed): one line ``error: <source>: <problem>`` on stderr
* 3 — a batch / eval run finished but some items failed (counts on stderr and in ``--json``)
* 1 — internal failure
* 130 — interrupted (Ctrl-C), with a line saying what was kept and how to resume

Without ``-v`` the command line prints nothing but its own lines: third-party warnings
(``warnings``), transformers' logging and FFmpeg's log are silenced. ``-v``/``-vv`` may stand anywhere
on the command line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import typer
import typer.main
from typer import _click as click  # typer >= 0.25 vendors click; its exceptions are these
from typer.exceptions import Abort

from garvideo._version import __version__
from garvideo.cli._errors import error_line
from garvideo.errors import InputError, ModelUnavailableError
from garvideo.runs.locking import OutputLocked

app = typer.Typer(
    name="garvideo",
    help="Region-level video understanding: track a masked object through a clip and describe it "
    "or answer questions about it with GAR (Grasp Any Region).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, in the order their commands are listed in --help.
_COMMAND_MODULES = ("track", "understand", "batch", "merge", "evaluate", "serve", "web", "info", "tiny")


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


def package_version() -> str:
    """garvideo's version as installed (the package metadata), else the source tree's ``__version__``."""
    try:
        return version("garvideo")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"garvideo {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug); allowed anywhere."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Logging is set up by :func:`main` (which also takes -v after the subcommand)."""


_register_all()

_VERBOSE_FLAG = re.compile(r"^-(v+)$")


def split_verbosity(argv: Sequence[str]) -> tuple[list[str], int]:
    """Take ``-v``, ``-vv``, ... and ``--verbose`` out of ``argv`` wherever they are (before a ``--``).

    Returns the remaining arguments and the verbosity (the number of ``v``).
    """
    rest: list[str] = []
    level = 0
    for i, arg in enumerate(argv):
        if arg == "--":
            rest.extend(argv[i:])
            break
        m = _VERBOSE_FLAG.match(arg)
        if m:
            level += len(m.group(1))
        elif arg == "--verbose":
            level += 1
        else:
            rest.append(arg)
    return rest, level


def configure_output(verbose: int) -> None:
    """Logging to stderr at the level ``-v`` asks for; at 0, third-party chatter silenced.

    ``warnings`` (transformers' FutureWarnings, torch's UserWarnings), transformers' own logging and
    FFmpeg's log (OpenCV reads ``OPENCV_FFMPEG_LOGLEVEL``; decord is quietened in
    :mod:`garvideo.video`) print nothing unless ``-v``; with ``-v`` warnings go through logging.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )
    if verbose == 0:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")  # read by huggingface_hub at import
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        for name in ("transformers", "huggingface_hub", "timm", "sam2", "PIL"):
            logging.getLogger(name).setLevel(logging.ERROR)
        if "transformers" in sys.modules:  # its level is read from the environment at import only
            sys.modules["transformers"].logging.set_verbosity_error()
    else:
        logging.captureWarnings(True)


def usage_line(exc: click.exceptions.UsageError) -> str:
    """A click usage error as one ``error: <option>: <problem>`` line (no usage box)."""
    ctx = exc.ctx
    where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    param = getattr(exc, "param", None)
    name = None
    if param is not None:
        opts = [o for o in getattr(param, "opts", []) if o.startswith("--")] or list(
            getattr(param, "opts", [])
        )
        if param.param_type_name == "option" and opts:
            name = opts[0]
        else:
            name = (param.name or "argument").upper()
    if isinstance(exc, click.exceptions.MissingParameter) and name is not None:
        return f"error: {name}: missing{where}"
    if isinstance(exc, click.exceptions.BadParameter) and name is not None:
        problem = " ".join(exc.message.split()).rstrip(".")
        return f"error: {name}: {problem[:1].lower() + problem[1:]}{where}"
    if isinstance(exc, click.exceptions.NoSuchOption):
        hint = f"; did you mean {', '.join(exc.possibilities)}?" if exc.possibilities else ""
        return f"error: {exc.option_name}: no such option{hint}{where}"
    if isinstance(exc, click.exceptions.BadOptionUsage):
        problem = " ".join(exc.message.split()).rstrip(".")
        problem = problem.replace(f"Option '{exc.option_name}' ", "")
        return f"error: {exc.option_name}: {problem[:1].lower() + problem[1:]}{where}"
    return f"error: {' '.join(exc.format_message().split()).rstrip('.')}{where}"


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: runs the app and exits with the documented exit code (see the module doc).

    Usage errors (click's) and garvideo's errors become one line on stderr.
    """
    args, verbose = split_verbosity(list(sys.argv[1:] if argv is None else argv))
    configure_output(verbose)
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=args, prog_name="garvideo", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        typer.echo(exc.format_message(), err=True)
        sys.exit(2)
    except click.exceptions.UsageError as exc:
        typer.echo(usage_line(exc), err=True)
        sys.exit(2)
    except click.exceptions.ClickException as exc:  # e.g. a file argument click could not open
        typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except (InputError, ModelUnavailableError) as exc:
        typer.echo(error_line(exc), err=True)
        sys.exit(2)
    except OutputLocked as exc:  # another process is writing the output: not bad input, but exit 2 too
        typer.echo(error_line(exc), err=True)
        sys.exit(2)
    except (KeyboardInterrupt, Abort):
        typer.echo("interrupted: stopped before finishing; nothing more was written", err=True)
        sys.exit(130)
    except Exception as exc:
        logging.getLogger("garvideo").debug("internal failure", exc_info=True)
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc} (rerun with -vv for the traceback)", err=True
        )
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)
