# garvideo in a container: `garvideo` is the entry point, `garvideo info` the default command.
#
#   docker build -t garvideo .                                    # CPU (torch's CPU wheels, ~1 GB smaller)
#   docker build -t garvideo:cuda \
#       --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#       --build-arg TORCH_INDEX=https://pypi.org/simple .        # CUDA (PyPI's torch wheels bundle CUDA)
#   docker run --rm garvideo                                      # garvideo info
#   docker run --rm -v "$PWD:/work" -w /work garvideo describe clip.mp4 --mask mask.png
#   docker run --rm --gpus all -p 8000:8000 garvideo:cuda serve --host 0.0.0.0 --allowed-root /work
#
# The install steps are the Makefile's (torch/torchvision first, then sam2 built against them without its
# CUDA extension, then garvideo with the demo and serve extras); tests/test_furniture_docker.py checks
# that they stay the same. Weights are not baked in: they download on first use into $HF_HOME (mount a
# volume there to keep them).
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/cache/huggingface \
    PATH=/opt/venv/bin:$PATH

# libgl1 / libglib2.0-0: OpenCV's wheels link them. python3-venv: the CUDA base has no venv module.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 ca-certificates \
    && if ! python3 -m venv --help >/dev/null 2>&1; then \
        apt-get install -y --no-install-recommends python3 python3-venv; fi \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && pip install -q --upgrade setuptools wheel

# torch/torchvision first: sam2's setup.py imports torch at build time.
RUN pip install -q --index-url "${TORCH_INDEX}" "torch==2.14.1" "torchvision==0.29.1"
# sam2 is source-only on PyPI: build it against the torch above, without the CUDA extension.
RUN SAM2_BUILD_CUDA=0 pip install -q --no-build-isolation "sam2>=1.0"

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY garvideo ./garvideo
COPY trackers ./trackers
COPY eval ./eval
COPY demos ./demos
RUN pip install -q ".[demo,serve]" && garvideo --version

WORKDIR /work
# garvideo serve (8000) and garvideo web (7860); both listen on 127.0.0.1 unless given --host 0.0.0.0.
EXPOSE 8000 7860
ENTRYPOINT ["garvideo"]
CMD ["info"]
