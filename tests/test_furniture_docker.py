"""The Dockerfile: parsed (dockerfile-parse), its install steps the Makefile's, every COPY source present and
not excluded by .dockerignore, every RUN valid shell. Where a docker engine is available
(``GARVIDEO_DOCKER_BUILD=1`` and ``docker`` on PATH) the image is also built and ``garvideo info`` run in it;
there is no docker engine where this project is developed, so that part has not run here."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli (a dependency of build, in the dev extra)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# Docker's instructions (https://docs.docker.com/reference/dockerfile/): anything else is a typo.
_INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR", "COMMENT",
}  # fmt: skip


@pytest.fixture(scope="module")
def dockerfile():
    dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="dockerfile-parse (the dev extra)")
    return dockerfile_parse.DockerfileParser(path=str(ROOT / "Dockerfile"))


def _instructions(dockerfile, name: str) -> list[str]:
    return [i["value"] for i in dockerfile.structure if i["instruction"] == name]


def _makefile_install() -> str:
    """The Makefile's install recipe (the ``$(BIN)/garvideo`` target)."""
    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^\$\(BIN\)/garvideo:.*?\n((?:\t.*\n|\s*#.*\n)+)", text, re.MULTILINE)
    assert m, "the Makefile's $(BIN)/garvideo recipe was not found"
    return m.group(1)


def test_dockerfile_parses_into_known_instructions(dockerfile):
    names = [i["instruction"] for i in dockerfile.structure]
    assert set(names) <= _INSTRUCTIONS, set(names) - _INSTRUCTIONS
    assert names.count("FROM") == 1
    # CPU base by default, any other (a CUDA image) through --build-arg BASE=...
    assert _instructions(dockerfile, "FROM") == ["${BASE}"]
    assert dockerfile.baseimage.startswith("python:3.")
    assert "--build-arg BASE=nvidia/cuda:" in (ROOT / "Dockerfile").read_text()
    assert dockerfile.args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"


def test_entrypoint_is_garvideo_and_cmd_a_real_command(dockerfile, run_cli):
    (entrypoint,) = _instructions(dockerfile, "ENTRYPOINT")
    (cmd,) = _instructions(dockerfile, "CMD")
    assert json.loads(entrypoint) == ["garvideo"]
    assert json.loads(cmd) == ["info"]
    rc, _out, err = run_cli("info", "--help")
    assert rc == 0, err
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "garvideo" in scripts


def test_install_steps_are_the_makefiles(dockerfile):
    recipe = _makefile_install()
    runs = "\n".join(_instructions(dockerfile, "RUN"))
    pins = re.findall(r'"(torch(?:vision)?==[^"]+)"', recipe)
    assert len(pins) == 2, recipe
    for pin in pins:
        assert f'"{pin}"' in runs, f"the Dockerfile does not install {pin} as the Makefile does"
    sam2 = re.search(r"SAM2_BUILD_CUDA=0 \S*pip install -q --no-build-isolation (\"sam2[^\"]*\")", recipe)
    assert sam2, recipe
    assert f"SAM2_BUILD_CUDA=0 pip install -q --no-build-isolation {sam2.group(1)}" in runs
    # sam2 is built after torch, garvideo installed after sam2 (sam2's setup.py imports torch).
    assert runs.index("torch==") < runs.index("SAM2_BUILD_CUDA") < runs.index('pip install -q ".[')
    extras = re.search(r'pip install -q "\.\[([^\]]+)\]"', runs).group(1).split(",")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) <= set(declared), set(extras) - set(declared)
    assert "setuptools wheel" in runs  # --no-build-isolation needs them, as in the Makefile
    assert "setuptools wheel" in recipe


def _ignored(path: str, patterns: list[str]) -> bool:
    hit = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.replace("**/", "")):
            hit = not negate
    return hit


def test_copy_sources_exist_and_cover_the_package(dockerfile):
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied: set[str] = set()
    for value in _instructions(dockerfile, "COPY"):
        *sources, _dest = value.split()
        for src in sources:
            assert not src.startswith("--"), "COPY flags are not expected here"
            assert (ROOT / src).exists(), f"COPY source {src} does not exist"
            assert not _ignored(src, patterns), f"COPY source {src} is excluded by .dockerignore"
            copied.add(src)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dirs = set(project["tool"]["setuptools"]["package-dir"].values())
    needed = package_dirs | {"pyproject.toml", project["project"]["readme"], "LICENSE"}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"


def test_every_run_is_valid_shell(dockerfile):
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    for value in _instructions(dockerfile, "RUN"):
        proc = subprocess.run([sh, "-n", "-c", value], check=False, capture_output=True, text=True)
        assert proc.returncode == 0, f"{value!r}: {proc.stderr}"


@pytest.mark.slow
def test_image_builds_and_runs_info():
    if os.environ.get("GARVIDEO_DOCKER_BUILD") != "1" or shutil.which("docker") is None:
        pytest.skip("docker build not requested (GARVIDEO_DOCKER_BUILD=1) or no docker engine")
    tag = "garvideo-test:latest"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=3600)
    out = subprocess.run(
        ["docker", "run", "--rm", tag], check=False, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert "python" in out.stdout and "packages" in out.stdout
