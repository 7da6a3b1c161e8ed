# syntax=docker/dockerfile:1
# The team stack's MLflow tracking server: MLflow (the clients' version) with its basic-auth
# app, the PostgreSQL driver for the backend store and boto3 for an s3:// artifact destination,
# none of which MLflow's plain image has. Started by docker/bin/mlflow-server.
#
#   docker build -f docker/mlflow.Dockerfile -t lrlab-mlflow .
# A tag by default; a team pins the digest it tested (PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
# in docker/.env; docs/deploy.md, "Pin the base images").
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

COPY docker/mlflow-server.lock /tmp/mlflow-server.lock
RUN python -m pip install --no-deps --require-hashes -r /tmp/mlflow-server.lock \
    && python -m pip check \
    && rm /tmp/mlflow-server.lock

RUN useradd --create-home --uid 1000 mlflow \
    && mkdir /mlartifacts \
    && chown mlflow:mlflow /mlartifacts
COPY docker/bin/mlflow-server /usr/local/bin/mlflow-server

USER 1000:1000
WORKDIR /home/mlflow
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=5 CMD ["mlflow-server", "health"]
CMD ["mlflow-server"]
