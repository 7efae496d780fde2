# syntax=docker/dockerfile:1
# platestream, OpenALPR-native worker image: the worker's `openalpr` engine, for users who license
# OpenALPR or run its open-source engine.
#   docker build -f deploy/docker/openalpr.Dockerfile -t platestream-openalpr:0.2.0 .
# No maintained base image packages libopenalpr beside a Python 3.11+, so the first stage builds
# OpenALPR (its last commit, checked by hash) against Debian 12's OpenCV 4, Tesseract 5 and
# Leptonica; the final stage carries only their runtime libraries. The platestream stage runs
# deploy/docker/install.sh like the other images, with the `openalpr` binding.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS openalpr
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       ca-certificates=2025* git=1:2.39.* cmake=3.25.* g++=4:12.2.* make=4.3-* \
       libopencv-dev=4.6.* libtesseract-dev=5.3.* libleptonica-dev=1.82.* \
       liblog4cplus-dev=2.0.* libcurl4-openssl-dev=7.88.* \
    && rm -rf /var/lib/apt/lists/*
ARG OPENALPR_COMMIT=736ab0e608cf9b20d92f36a873bb1152240daa98
RUN git clone --quiet https://github.com/openalpr/openalpr.git /openalpr \
    && git -C /openalpr checkout --quiet "${OPENALPR_COMMIT}" \
    && test "$(git -C /openalpr rev-parse HEAD)" = "${OPENALPR_COMMIT}"
WORKDIR /openalpr/src/build
RUN cmake .. -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/opt/openalpr \
       -DCMAKE_INSTALL_SYSCONFDIR=/opt/openalpr/etc \
       -DWITH_DAEMON=OFF -DWITH_UTILITIES=OFF -DWITH_TESTS=OFF -DWITH_GPU_DETECTOR=OFF \
       -DWITH_BINDING_JAVA=OFF -DWITH_BINDING_GO=OFF -DWITH_BINDING_PYTHON=ON \
       -DTesseract_INCLUDE_BASEAPI_DIR=/usr/include/tesseract \
       -DTesseract_INCLUDE_CCMAIN_DIR=/usr/include/tesseract \
       -DTesseract_INCLUDE_CCUTIL_DIR=/usr/include/tesseract \
    && make -j"$(nproc)" \
    && make install

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml MANIFEST.in README.md BENCHMARKS.md ./
COPY platestream platestream
COPY deploy/docker/install.sh /usr/local/bin/platestream-install
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN sh /usr/local/bin/platestream-install /src /opt/platestream s3,metrics,postgres
# The binding from OpenALPR's own tree: the `openalpr` on PyPI calls functions of the commercial
# library that the open-source one lacks.
COPY --from=openalpr /openalpr/src/bindings/python /tmp/openalpr-binding
RUN /opt/platestream/bin/python -m pip install --no-deps /tmp/openalpr-binding

FROM ${PYTHON_IMAGE}
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="platestream-openalpr" \
      org.opencontainers.image.description="platestream recognition worker on the native OpenALPR engine" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later" \
      org.opencontainers.image.source="https://github.com/platestream/platestream"
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       libopencv-core406=4.6.* libopencv-imgproc406=4.6.* libopencv-imgcodecs406=4.6.* \
       libopencv-objdetect406=4.6.* libopencv-video406=4.6.* libopencv-videoio406=4.6.* \
       libopencv-highgui406=4.6.* libopencv-features2d406=4.6.* libopencv-flann406=4.6.* \
       libopencv-calib3d406=4.6.* libtesseract5=5.3.* liblept5=1.82.* liblog4cplus-2.0.5=2.0.* \
       libcurl4=7.88.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin platestream \
    && mkdir /data && chown 10001:10001 /data
COPY --from=openalpr /opt/openalpr /opt/openalpr
COPY --from=build /opt/platestream /opt/platestream
ENV PATH=/opt/platestream/bin:/opt/openalpr/bin:$PATH \
    LD_LIBRARY_PATH=/opt/openalpr/lib \
    PLATESTREAM_ENGINE=openalpr \
    PLATESTREAM_OPENALPR_CONFIG=/opt/openalpr/etc/openalpr/openalpr.conf \
    PLATESTREAM_OPENALPR_RUNTIME_DATA=/opt/openalpr/share/openalpr/runtime_data \
    PLATESTREAM_STATE_DIR=/data \
    PLATESTREAM_HEALTH_PORT=8080 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "platestream.healthcheck"]
CMD ["platestream", "worker"]
