# Two entry points, each doing its own set-up on a fresh machine:
#   make demo   - create .venv, install, generate the sample clip, run `garvideo describe` on it
#   make test   - create .venv, install, run `make lint` (ruff, mypy, the import graph), then the whole
#                 test suite (under the project's transformers, then again under transformers 4.56.2, the
#                 official GAR code's pin and our lower bound)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
COMPAT := .venv-tf456
OUTDIR ?= out

.PHONY: install browser demo test lint docs clean

$(BIN)/garvideo: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade setuptools wheel
	# torch/torchvision first: sam2's setup.py imports torch at build time.
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	# sam2 is source-only on PyPI: build it against the torch above, without the CUDA extension
	# (garvideo does its post-processing without it, on CPU and GPU).
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q --no-build-isolation "sam2>=1.0"
	$(BIN)/pip install -q -e ".[dev,demo,serve,docs]"
	touch $@

install: $(BIN)/garvideo

# A second venv over .venv with transformers 4.56.2 (and the tokenizers / huggingface_hub it needs).
$(COMPAT)/bin/python: $(BIN)/garvideo tools/compat_venv.py
	$(BIN)/python tools/compat_venv.py $(COMPAT)

# The web demo's browser test drives Debian's chromium (headless, through playwright's Python package;
# no browser download). As root, install it when missing; otherwise the test says what is missing.
browser:
	@if [ "$$(id -u)" = 0 ] && ! command -v chromium >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi

# Without GAR weights (offline, none on disk) describe still tracks and writes the overlay, then stops
# with exit code 2 and says how to get the weights: the demo reports that and ends cleanly.
demo: install
	$(BIN)/python -m garvideo.demos.sample_clip $(OUTDIR)/sample
	@rm -f $(OUTDIR)/sample/overlay.mp4
	@$(BIN)/garvideo describe $(OUTDIR)/sample/clip.mp4 --mask $(OUTDIR)/sample/mask_00000.png \
		--overlay $(OUTDIR)/sample/overlay.mp4; rc=$$?; \
	if [ $$rc -eq 2 ] && [ -s $(OUTDIR)/sample/overlay.mp4 ]; then \
		echo "demo: tracked the sample clip, overlay at $(OUTDIR)/sample/overlay.mp4; the description needs GAR weights (see above)"; \
	else exit $$rc; fi

test: lint browser $(COMPAT)/bin/python
	GARVIDEO_REQUIRE_BROWSER=$$([ "$$(id -u)" = 0 ] && echo 1 || echo 0) $(BIN)/python -m pytest -q tests
	@echo "== the same suite under transformers 4.56.2 =="
	GARVIDEO_REQUIRE_BROWSER=$$([ "$$(id -u)" = 0 ] && echo 1 || echo 0) $(COMPAT)/bin/python -m pytest -q -p no:cacheprovider tests

# The documentation site (mkdocs-material; API pages from the docstrings) in out/site; any warning fails.
docs: install
	$(BIN)/mkdocs build --strict --site-dir $(OUTDIR)/site

# Style (ruff), types (mypy over the installed layout) and the import graph (no cycle, no upward import).
lint: install
	$(BIN)/python -m ruff check garvideo trackers eval demos tests bench tools
	$(BIN)/python tools/typecheck.py
	$(BIN)/python tools/import_graph.py

clean:
	rm -rf $(VENV) $(COMPAT) $(OUTDIR)
