"""Each front end words the library's errors with one table keyed by library fields: the CLI's flags
(``garvideo.cli._errors.FIELD_FLAGS``), the API's parameters (``garvideo.serve.app.API_PARAMS``), the web
page's labels (``garvideo.demos.web.PAGE_LABELS``) and the demo scripts' flags (``DEMO_FLAGS``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer.main

from garvideo.cli import app
from garvideo.cli._errors import FIELD_FLAGS, error_line
from garvideo.errors import InputError

REPO = Path(__file__).resolve().parents[1]

#: The library: everything but the front ends (garvideo/cli, garvideo/serve, demos/) and the tools.
LIBRARY = [
    *(p for p in (REPO / "garvideo").rglob("*.py") if not {"cli", "serve"} & set(p.parts)),
    *(REPO / "trackers").rglob("*.py"),
    *(REPO / "eval").rglob("*.py"),
]

#: Error classes whose first argument is the source (InputError and its subclasses).
ERRORS = {"InputError", "NoTextMatchError"}

#: Sources the library passes as a value rather than a literal: the token budget's (``describe`` or
#: ``question``) and the settings a rerun is compared on (``SettingsMismatch.field``: the keys of
#: ``garvideo.runs.settings`` ``RunSettings.settings``).
DYNAMIC = {
    "describe",
    "question",
    "model", "model_revision", "model_hash", "tracker", "tracker_checkpoint", "tracker_options",
    "num_frames", "keyframes", "include_prompt_frame", "per_second", "roi_mode", "dtype", "max_new_tokens",
    "region_order", "mode", "text_threshold", "text_nms_iou", "text_checkpoint", "text_checkpoint_revision",
    "text_checkpoint_hash", "garvideo",
}  # fmt: skip


def _literal_sources(path: Path) -> list[tuple[int, str]]:
    """``(line, source)`` of each ``InputError("<literal>", ...)`` in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        first = node.args[0]
        if name in ERRORS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            out.append((node.lineno, first.value))
    return out


def test_every_field_the_library_raises_has_a_flag():
    sources = {
        f"{path.relative_to(REPO)}:{line}": source
        for path in LIBRARY
        for line, source in _literal_sources(path)
    }
    assert len(sources) > 50  # the scan finds the library's errors
    flags = [where for where, source in sources.items() if source.startswith("-")]
    assert not flags, f"library errors naming a CLI flag instead of a field: {flags}"
    # A field a CLI user sets (a flag of that name exists, e.g. num_frames -> --num-frames, masks -> --mask)
    # must be in the table; the others (tensor arguments of the model API, config.json, ...) are printed as
    # the library names them, since no flag sets them.
    options = _cli_options()

    repeated = {"masks": "--mask", "options": "--option", "flow_options": "--flow-option"}  # one per flag

    def settable(field: str) -> bool:
        return repeated.get(field, "--" + field.replace("_", "-")) in options

    missing = {where: s for where, s in sources.items() if settable(s) and s not in FIELD_FLAGS}
    assert not missing, f"fields a flag sets, not in garvideo.cli._errors.FIELD_FLAGS: {missing}"
    assert {"num_frames", "masks", "question", "options", "frame", "text_pick", "out"} <= {
        s for s in sources.values() if settable(s)
    }  # the rule above does catch the fields users set
    assert DYNAMIC - {"describe"} <= set(FIELD_FLAGS)


def _cli_options() -> set[str]:
    """Every long option of every ``garvideo`` command."""
    out: set[str] = set()

    def walk(command):
        for param in command.params:
            out.update(o for o in getattr(param, "opts", []) if o.startswith("--"))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return out


def test_the_cli_table_names_real_flags_and_error_line_uses_it():
    options = _cli_options()
    named = {f for flag in FIELD_FLAGS.values() if flag.startswith("--") for f in flag.split()[0].split("/")}
    assert named and named <= options, named - options
    assert (
        error_line(InputError("num_frames", "must be >= 1, got 0"))
        == "error: --num-frames: must be >= 1, got 0"
    )
    assert error_line(InputError("clip.mp4", "no such file")) == "error: clip.mp4: no such file"
    assert error_line(InputError(None, "two\n  lines")) == "error: two lines"


def test_settings_mismatch_names_the_flag(tmp_path):
    from garvideo.cli._checks import word_settings_mismatch
    from garvideo.runs.settings import SettingsMismatch

    exc = SettingsMismatch(tmp_path / "preds.jsonl", "num_frames", 1, 2, "other settings")
    line = error_line(word_settings_mismatch(exc))
    assert line.startswith("error: --num-frames: 1 in preds.jsonl, 2 now;") and "--overwrite" in line
    exc = SettingsMismatch(tmp_path / "preds.jsonl", "model_revision", "a" * 40, "b" * 40, "other settings")
    assert error_line(word_settings_mismatch(exc)).startswith("error: --model (its revision): ")


def test_the_server_table_covers_what_a_request_sets():
    pytest.importorskip("fastapi")
    from garvideo.serve.app import API_PARAMS
    from garvideo.serve.schema import ChatRequest

    # A request sets the question and options, the objects (masks on a frame, points, boxes, text) and
    # num_frames / max_tokens: every library field those reach maps to a parameter of the request.
    reachable = {"question", "options", "masks", "frame", "points", "box", "text", "text_pick", "num_frames"}
    reachable |= {"max_new_tokens", "describe"}
    assert reachable <= set(API_PARAMS), reachable - set(API_PARAMS)
    assert set(API_PARAMS.values()) <= set(ChatRequest.model_fields), set(API_PARAMS.values())
    assert set(API_PARAMS) - {"describe"} <= set(FIELD_FLAGS)  # fields, as the library names them


def test_the_page_table_covers_what_the_page_sets():
    from garvideo.demos.web import PAGE_LABELS, toast_message

    reachable = {"video", "masks", "frame", "points", "box", "question", "options", "num_frames"}
    reachable |= {"max_new_tokens", "text", "text_pick", "text_threshold", "tracker", "sam2_checkpoint"}
    assert reachable <= set(PAGE_LABELS), reachable - set(PAGE_LABELS)
    assert set(PAGE_LABELS) <= set(FIELD_FLAGS)
    assert all(not label.startswith("-") for label in PAGE_LABELS.values())
    assert (
        toast_message(InputError("max_new_tokens", "must be >= 1, got 0"))
        == "answer length: must be >= 1, got 0"
    )
    # a CLI remedy in a library problem is left out on the page
    exc = InputError(
        "masks", "mask is 10x10 but the video frames are 20x20 (pass --resize-masks to resize it)"
    )
    assert toast_message(exc) == "mask: mask is 10x10 but the video frames are 20x20"
    assert toast_message(InputError('text "<i>x</i>"', "no match")) == 'name the object "<i>x</i>": no match'


def test_the_demo_scripts_table_names_their_flags():
    from garvideo.demos._common import DEMO_FLAGS, add_overlay_arg, demo_parser
    from garvideo.demos._common import error_line as demo_error_line
    from garvideo.demos.web import _parser as web_parser

    parser = demo_parser("x", "", "")
    add_overlay_arg(parser, "o.mp4")
    flags = {o for p in (parser, web_parser()) for a in p._actions for o in a.option_strings}
    flags.add("--question")  # relationship_question's own
    flags.add("--option")
    assert set(DEMO_FLAGS.values()) <= flags, set(DEMO_FLAGS.values()) - flags
    assert demo_error_line(InputError("num_frames", "must be >= 1")) == "error: --num-frames: must be >= 1"
