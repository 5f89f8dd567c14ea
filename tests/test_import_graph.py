"""The package's import arrows point one way (issue #20): no cycle among garvideo's modules, counting
function-local and TYPE_CHECKING imports, and no import up the layers (tools/import_graph.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_cycles_and_no_upward_imports() -> None:
    report = _tool().report(ROOT, by_module=True)
    assert report["modules"] > 60  # the whole package was read
    assert report["cycles"] == []
    assert report["upward"] == []


def test_the_tool_finds_a_cycle_a_local_import_makes_and_an_upward_import(tmp_path: Path) -> None:
    tool = _tool()
    for folder in ("garvideo/pipeline", "garvideo/cli", "trackers", "eval", "demos"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "garvideo" / "__init__.py").write_text("")
    # a -> b at module level, b -> a inside a function and under TYPE_CHECKING: a cycle all the same
    (tmp_path / "garvideo/pipeline/a.py").write_text("from garvideo.pipeline import b\n")
    (tmp_path / "garvideo/pipeline/b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n"
        "def f():\n    from garvideo.cli import c\n"
    )
    (tmp_path / "garvideo/cli/c.py").write_text("")
    report = tool.report(tmp_path, by_module=True)
    assert report["cycles"] == [["garvideo.pipeline.a", "garvideo.pipeline.b"]]
    assert report["upward"] == [["garvideo.pipeline.b", "garvideo.cli.c"]]
    assert tool.layer_of("garvideo.trackers.flow.session") == 0
    assert tool.layer_of("garvideo.cli.batch") == 3
