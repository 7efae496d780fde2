# syntax=docker/dockerfile:1
# platestream, CPU image: every service (worker, aggregator, store, producers, search, demo).
#   docker build -t platestream:0.2.0 .
# The build stage runs deploy/docker/install.sh, the same steps tests/test_wheel.py replays: the
# wheel built from the sdist, installed with its `all` extra into /opt/platestream, and the engine's
# models converted into /models. The final stage copies both: no compilers, no pip cache, no source.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml MANIFEST.in README.md BENCHMARKS.md ./
COPY platestream platestream
COPY deploy/docker/install.sh /usr/local/bin/platestream-install
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN sh /usr/local/bin/platestream-install /src /opt/platestream all /models

FROM ${PYTHON_IMAGE}
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="platestream" \
      org.opencontainers.image.description="Distributed licence-plate recognition over Kafka (CPU: all services)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later" \
      org.opencontainers.image.source="https://github.com/platestream/platestream"
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin platestream \
    && mkdir /data && chown 10001:10001 /data
COPY --from=build /opt/platestream /opt/platestream
COPY --from=build /models /models
ENV PATH=/opt/platestream/bin:$PATH \
    PLATESTREAM_MODEL_DIR=/models \
    PLATESTREAM_STATE_DIR=/data \
    PLATESTREAM_HEALTH_PORT=8080 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "platestream.healthcheck"]
CMD ["platestream", "--help"]
