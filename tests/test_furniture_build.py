"""The sdist and the wheel build (``python -m build``), the wheel holds every package of the installed layout
and its package data, and it installs (``--no-deps``) into a fresh virtual environment whose ``garvideo``
runs from the wheel.

The build runs on a copy of the repository's files (``git ls-files``: tracked and new, not ignored) so
that it leaves no ``build/`` or ``*.egg-info`` in the worktree, and without build isolation where the
installed setuptools and wheel meet ``[build-system] requires`` (the Makefile upgrades them; no
download), in isolation otherwise. The fresh venv sees this venv's packages
through a ``.pth`` file (the dependencies: torch, transformers, ...), as ``tools/compat_venv.py`` does.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli (a dependency of build, in the dev extra)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], check=False, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _source_copy(dest: Path) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git to list the repository's files")
    files = _run("git", "-C", ROOT, "ls-files", "-co", "--exclude-standard", "-z").stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _build_requires_met() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    for line in _project()["build-system"]["requires"]:
        req = Requirement(line)
        try:
            if not req.specifier.contains(version(req.name), prereleases=True):
                return False
        except PackageNotFoundError:
            return False
    return True


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="the build package (the dev extra)")
    src = _source_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    # Without isolation (no download) when this interpreter has the build-system's requirements (the
    # Makefile upgrades setuptools in .venv); else (a venv of tools/compat_venv.py keeps venv's own older
    # setuptools) build in isolation, which fetches them from the package index.
    isolation = ["--no-isolation"] if _build_requires_met() else []
    proc = _run(sys.executable, "-m", "build", *isolation, "--outdir", out, src, timeout=900)
    log = proc.stdout + proc.stderr
    assert "deprecated" not in log.lower(), log[-3000:]  # e.g. setuptools' warnings on pyproject fields
    return out


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.slow
def test_wheel_holds_the_installed_layout_and_package_data(dist):
    project = _project()
    version = project["project"]["version"]
    (wheel,) = dist.glob(f"garvideo-{version}-py3-none-any.whl")
    (sdist,) = dist.glob(f"garvideo-{version}.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    setuptools_cfg = project["tool"]["setuptools"]
    for package, folder in setuptools_cfg["package-dir"].items():
        # every module of the source folder and of its sub-packages (each listed in `packages`, since
        # setuptools is given the list, not asked to find them)
        for module in sorted((ROOT / folder).rglob("*.py")):
            rel = module.relative_to(ROOT / folder)
            where = f"{package.replace('.', '/')}/{rel.as_posix()}"
            assert where in names, f"{where} ({folder}/{rel}) is not in the wheel: is its package listed?"
    assert "garvideo/py.typed" in names  # PEP 561: the annotations are for type checkers too
    for package in setuptools_cfg["packages"]:
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    for package, patterns in setuptools_cfg["package-data"].items():
        folder = ROOT / setuptools_cfg["package-dir"].get(package, package.replace(".", "/"))
        for path in folder.iterdir():
            if any(fnmatch.fnmatch(path.name, p) for p in patterns):
                assert f"{package.replace('.', '/')}/{path.name}" in names, f"package data {path}"
    assert "garvideo/cli/web.py" in names
    assert any(n.endswith(".dist-info/entry_points.txt") for n in names)
    licences = [n for n in names if "dist-info/" in n and n.rsplit("/", 1)[-1] == "LICENSE"]
    assert licences, "LICENSE is not in the wheel's metadata"
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(f"garvideo-{version}.dist-info/METADATA").decode()
    assert f"Version: {version}" in metadata
    for extra in project["project"]["optional-dependencies"]:
        assert f"Provides-Extra: {extra}" in metadata, extra
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    for needed in ("pyproject.toml", "README.md", "LICENSE", "trackers/__init__.py", "eval/__init__.py"):
        assert f"garvideo-{version}/{needed}" in members, needed


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_runs(dist, tmp_path):
    version = _project()["project"]["version"]
    (wheel,) = dist.glob("garvideo-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, timeout=300)
    bindir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    python = bindir / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    # The dependencies from this interpreter's site-packages, after the fresh venv's own.
    ours = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "zz-deps.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, timeout=300)
    out = _run(bindir / "garvideo", "--version", cwd=tmp_path).stdout
    assert out.strip() == f"garvideo {version}"
    check = (
        "import garvideo, garvideo.trackers, garvideo.eval, garvideo.demos, garvideo.cli.web\n"
        "for m in (garvideo, garvideo.trackers, garvideo.eval, garvideo.demos, garvideo.cli.web):\n"
        "    print(m.__file__)\n"
    )
    files = _run(python, "-c", check, cwd=tmp_path).stdout.split()
    assert len(files) == 5
    for f in files:  # imported from the wheel, not from the worktree's editable install
        assert Path(f).resolve().is_relative_to(Path(purelib).resolve()), f
    help_text = _run(bindir / "garvideo", "--help", cwd=tmp_path).stdout
    assert " web " in help_text and " serve " in help_text
