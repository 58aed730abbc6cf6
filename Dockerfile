# pathorag API image. Builds with BuildKit or the classic builder (no `# syntax=` line: no frontend
# image is pulled) and needs no network beyond the Python package index and Debian's archive.
#   docker build -t pathorag:cpu .                                  # CPU torch (small)
#   docker build --build-arg VARIANT=cuda -t pathorag:cuda .        # PyPI's CUDA-built torch
# Offline-ish machines (README "Deployment", scripts/check_image.sh does all of this):
#   --build-arg PYTHON_IMAGE=local/python:3.11-bookworm   any Debian-based image with python3 and venv
#   --build-arg PIP_INDEX_URL=https://mirror/simple       the Python package index (or a mirror)
#   --build-arg TORCH_INDEX_URL=                          empty: torch from PIP_INDEX_URL or docker/wheels
#   docker/wheels/*.whl                                   wheels pip takes first (e.g. a CPU torch)
#   docker/build-ca.crt                                   a CA bundle for a TLS-inspecting proxy: used by
#                                                         the builder stage only, never in the image
# Run: docker run -p 8000:8000 -v pathorag-data:/data -e PATHORAG_API_KEYS=... pathorag:cpu
ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a virtual environment with torch and pathorag ---------------------------------
FROM ${PYTHON_IMAGE} AS builder
# cpu: torch (and a matching torchvision) from the PyTorch CPU index; cuda: PyPI's default torch,
# which is CUDA-built (its CUDA runtime comes as pip wheels, so the same slim base works; the host
# needs the NVIDIA driver and container toolkit).
ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_INDEX_URL=${PIP_INDEX_URL} \
    PIP_FIND_LINKS=/build/wheels PATH=/opt/venv/bin:$PATH
COPY docker/ /build/
RUN python3 -m venv /opt/venv
# A CA bundle, if given, is trusted by pip in this stage only (the runtime stage never copies it).
RUN if [ -s /build/build-ca.crt ]; then export PIP_CERT=/build/build-ca.crt; fi; \
    case "$VARIANT" in \
      cpu)  if [ -n "$TORCH_INDEX_URL" ]; then \
              pip install "torch==${TORCH_VERSION}" torchvision --index-url "$TORCH_INDEX_URL"; \
            else pip install "torch==${TORCH_VERSION}"; fi ;; \
      cuda) pip install "torch==${TORCH_VERSION}" torchvision ;; \
      *)    echo "VARIANT must be cpu or cuda, not '${VARIANT}'" >&2; exit 1 ;; \
    esac
WORKDIR /src
COPY pyproject.toml README.md ./
COPY rag/ rag/
COPY indexer/ indexer/
COPY agent/ agent/
COPY server/ server/
COPY pathorag/ pathorag/
COPY corpora/ /opt/venv/share/pathorag/corpora/
# torch is already satisfied, so this keeps the chosen build; postgres: for shared thread storage.
RUN if [ -s /build/build-ca.crt ]; then export PIP_CERT=/build/build-ca.crt; fi; \
    pip install ".[postgres]" && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

# --- runtime: slim image with the venv, Tesseract and a non-root user ------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="pathorag" \
      org.opencontainers.image.description="Pathology textbook RAG server" \
      org.opencontainers.image.licenses="Apache-2.0" \
      pathorag.variant="${VARIANT}"
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tesseract-ocr \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 pathorag \
    && useradd --system --uid 10001 --gid pathorag --home-dir /home/pathorag --create-home pathorag \
    && mkdir -p /data /cache/huggingface \
    && chown pathorag:pathorag /data /cache/huggingface
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PATHORAG_DATA_DIR=/data \
    PATHORAG_SERVER_HOST=0.0.0.0 \
    PATHORAG_SERVER_PORT=8000 \
    HF_HOME=/cache/huggingface
VOLUME ["/data"]
USER pathorag
WORKDIR /home/pathorag
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PATHORAG_SERVER_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["pathorag"]
CMD ["serve", "--host", "0.0.0.0"]
