# syntax=docker/dockerfile:1
# lrlab's JAX worker image: JAX with CUDA 12 for NVIDIA GPUs (no TensorFlow), lrlab with its
# locked dependencies, and Ray. Runs are on `backend=jax` (KERAS_BACKEND=jax); a container is
# a Ray worker node that joins the team stack's head, like the TensorFlow image (Dockerfile).
#
#   docker build -f docker/jax.Dockerfile -t lrlab-worker-jax .
#   docker compose -f docker/compose.worker.yaml --profile jax up -d ray-worker-jax
#
# JAX brings CUDA as pip wheels (jax[cuda12]), so the base is plain Python: the host needs
# only the NVIDIA driver and container toolkit. May carry a digest: PYTHON_IMAGE=...@sha256:...
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
FROM ${PYTHON_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    LRLAB_DATA_DIR=/data \
    KERAS_BACKEND=jax \
    XLA_PYTHON_CLIENT_PREALLOCATE=false
# JAX's own version, as pyproject.toml's jax extra allows; its CUDA wheels come with it.
ARG JAX_VERSION=0.10.2

# The locked set (docker/requirements.lock, exact versions with hashes) less TensorFlow, which
# this image does not run; then JAX for CUDA 12.
COPY docker/requirements.lock /tmp/requirements.lock
RUN python -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 12), \
         f"Python {sys.version.split()[0]}: docker/requirements.lock is for 3.11 and 3.12"' \
    && awk '/^[a-z]/ { skip = ($0 ~ /^tensorflow(-[a-z-]+)?==/) } !skip' \
         /tmp/requirements.lock > /tmp/requirements-jax.lock \
    && python -m pip install --no-deps --require-hashes -r /tmp/requirements-jax.lock \
    && python -m pip install "jax[cuda12]==${JAX_VERSION}" \
    && rm /tmp/requirements.lock /tmp/requirements-jax.lock

RUN useradd --create-home --uid 1000 --shell /bin/bash lrlab \
    && mkdir -p /data /runs \
    && chown lrlab:lrlab /data /runs

# The source, installed in place: Hydra finds conf/ beside the trainer package.
WORKDIR /opt/lrlab
COPY pyproject.toml README.md ./
COPY conf/ conf/
COPY hydra_plugins/ hydra_plugins/
COPY metrics/ metrics/
COPY schedules/ schedules/
COPY trainer/ trainer/
COPY docker/bin/ /usr/local/bin/
RUN python -m pip install --no-deps -e . \
    && python -c 'import keras, trainer; assert keras.backend.backend() == "jax"'

# numeric, so that a runtime can tell it is not root (runAsNonRoot)
USER 1000:1000
WORKDIR /runs
# Healthy when this container's Ray node (worker or head) answers.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["ray-node", "health"]
CMD ["ray-node", "worker"]
