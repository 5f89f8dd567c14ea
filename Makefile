# Two entry points, each doing its own set-up on a fresh machine:
#   make demo   - create .venv, install, generate the sample clip, run `garvideo describe` on it
#   make test   - create .venv, install, run the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUTDIR ?= out

.PHONY: install demo test lint clean

$(BIN)/garvideo: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade setuptools wheel
	# torch/torchvision first: sam2's setup.py imports torch at build time.
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	# sam2 is source-only on PyPI: build it against the torch above, without the CUDA extension
	# (garvideo does its post-processing without it, on CPU and GPU).
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q --no-build-isolation "sam2>=1.0"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/garvideo

demo: install
	$(BIN)/python -m garvideo.demos.sample_clip $(OUTDIR)/sample
	$(BIN)/garvideo describe $(OUTDIR)/sample/clip.mp4 --mask $(OUTDIR)/sample/mask_00000.png \
		--overlay $(OUTDIR)/sample/overlay.mp4

test: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check garvideo trackers eval demos tests bench

clean:
	rm -rf $(VENV) $(OUTDIR)
