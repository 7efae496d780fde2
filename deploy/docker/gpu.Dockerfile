# syntax=docker/dockerfile:1
# platestream, GPU worker image: the worker on ONNX Runtime's CUDA execution provider.
#   docker build -f deploy/docker/gpu.Dockerfile -t platestream-gpu:0.2.0 .
# Run with PLATESTREAM_GPU=true on a node with the NVIDIA container toolkit. It installs the `all-gpu`
# extra (onnxruntime-gpu and never the CPU onnxruntime beside it) with deploy/docker/install.sh.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3=3.12.* python3-venv=3.12.* \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml MANIFEST.in README.md BENCHMARKS.md ./
COPY platestream platestream
COPY deploy/docker/install.sh /usr/local/bin/platestream-install
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN sh /usr/local/bin/platestream-install /src /opt/platestream all-gpu /models

FROM ${CUDA_IMAGE}
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="platestream-gpu" \
      org.opencontainers.image.description="platestream recognition worker on CUDA (onnxruntime-gpu)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later" \
      org.opencontainers.image.source="https://github.com/platestream/platestream"
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3=3.12.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin platestream \
    && mkdir /data && chown 10001:10001 /data
COPY --from=build /opt/platestream /opt/platestream
COPY --from=build /models /models
ENV PATH=/opt/platestream/bin:$PATH \
    PLATESTREAM_MODEL_DIR=/models \
    PLATESTREAM_STATE_DIR=/data \
    PLATESTREAM_HEALTH_PORT=8080 \
    PLATESTREAM_GPU=true \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-m", "platestream.healthcheck"]
CMD ["platestream", "worker"]
