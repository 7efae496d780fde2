FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY platestream platestream
COPY schemas schemas
COPY producers producers
COPY workers workers
COPY aggregator aggregator
RUN pip install --no-cache-dir '.[all]'
# Convert the plate detector at build time: pods never fetch models.
ENV PLATESTREAM_MODEL_DIR=/models
RUN platestream models fetch && chmod -R a+rX /models
USER 65534
CMD ["platestream", "--help"]
