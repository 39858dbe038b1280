# Edge Impulse custom ML learning block (PyTorch KWS, dendritic conv+FC nets).
#
# Studio builds this file on EI's x86_64 builders and runs the ENTRYPOINT with
#   --data-directory <dir> --out-directory <dir> --info-file <train_input.json> --<param> <value> ...
# without network access, so every wheel is installed here at build time.
#
# Build args:
#   BASE_IMAGE          any image whose `python3` is 3.11 with the venv module (the pins need 3.11).
#   TORCH_VARIANT       cpu (default: torch==2.13.0+cpu, a ~4 GB image; these nets of a few thousand params
#                       train as fast on a CPU, and `edge-impulse-blocks push` cannot pass build args, so
#                       this is what Studio builds) or cuda (torch==2.13.0 from PyPI, the CUDA 13.0 build:
#                       a ~8 GB image that needs an NVIDIA driver >= 580 to use a GPU; on an older driver,
#                       such as EI's CUDA 11.2/12.x workers, it silently trains on the CPU).
#   TORCH_CPU_INDEX_URL where the +cpu wheel comes from for TORCH_VARIANT=cpu; set it empty when
#                       PIP_INSTALL_ARGS points at a local wheel folder (--find-links) instead.
#   PIP_INSTALL_ARGS    extra pip options (a mirror, --find-links); the default keeps pip's cache out.
# See docs/container.md for the build/run commands.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_VARIANT=cpu
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INSTALL_ARGS=--no-cache-dir

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# EI mounts /home and /data at run time; never use them as the workdir.
WORKDIR /app

# A venv keeps the pins apart from the distro's Python (Debian's python3 is PEP 668 "externally managed").
RUN python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), "pins need 3.11, not " + sys.version' \
    && python3 -m venv /opt/venv

# Dependencies before the code, so editing the code does not re-install them.
COPY requirements.txt ./
RUN set -eu; \
    torch_version="$(sed -n 's/^torch==\([0-9][0-9.]*\).*/\1/p' requirements.txt)"; \
    test -n "$torch_version"; \
    case "$TORCH_VARIANT" in \
      cuda) ;; \
      cpu) pip install $PIP_INSTALL_ARGS ${TORCH_CPU_INDEX_URL:+--extra-index-url "$TORCH_CPU_INDEX_URL"} \
             "torch==${torch_version}+cpu" ;; \
      *) echo "TORCH_VARIANT must be cuda or cpu, got '$TORCH_VARIANT'" >&2; exit 1 ;; \
    esac; \
    pip install $PIP_INSTALL_ARGS -r requirements.txt; \
    pip check; \
    python3 -c 'import torch, tensorflow, onnx, onnx2tf, ai_edge_litert; \
print("torch", torch.__version__, "cuda", torch.version.cuda, "| tensorflow", tensorflow.__version__)'

COPY . ./

# Exec form, no shell in between: python3 is the container's PID 1 and gets `docker stop`'s (and Studio's
# cancel) SIGTERM itself. PID 1 ignores signals it has no handler for; train.py installs one, so the job stops
# at once with `ERR: terminated (SIGTERM)`, exit 143 and no model files (tests/test_container.py).
ENTRYPOINT ["python3", "-u", "train.py"]
