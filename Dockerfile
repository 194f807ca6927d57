# remitflow's command line in a container: `docker run remitflow:local run` (the default),
# `... serve`, `... ingest --kind bank /data/bai2/`. docker-compose.yml builds and runs it.
# CPython 3.11, as pyproject.toml asks (>=3.11,<3.13: bytewax 0.21.1 has no 3.13 wheels).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The project and its runtime dependencies, without the dev extras (.dockerignore keeps the
# context to pyproject.toml, README.md and the packages).
WORKDIR /src
COPY . .
RUN pip install .

# A non-root user owning only the recovery store (a volume in docker-compose.yml).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/remitflow \
        --shell /usr/sbin/nologin remitflow \
    && mkdir -p /var/lib/remitflow/recovery \
    && chown -R remitflow:remitflow /var/lib/remitflow
USER 10001:10001
WORKDIR /var/lib/remitflow
ENV REMITFLOW_RECOVERY_DIR=/var/lib/remitflow/recovery

# REMITFLOW_METRICS_PORT (remitflow run) and REMITFLOW_API_PORT (remitflow serve) defaults.
EXPOSE 9464 8080

ENTRYPOINT ["remitflow"]
CMD ["run"]
