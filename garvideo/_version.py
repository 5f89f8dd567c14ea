"""garvideo's version, in one place: pyproject's ``version`` says the same (tests/test_furniture_cli.py checks it).

Its own module so that the package's modules can read it without importing the package root, which
re-exports the pipeline."""

__version__ = "0.1.0"
