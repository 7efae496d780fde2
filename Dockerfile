FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY platestream platestream
COPY schemas schemas
COPY producers producers
COPY workers workers
COPY aggregator aggregator
RUN pip install --no-cache-dir '.[all]'
USER 65534
ENTRYPOINT []
CMD ["platestream", "--help"]
