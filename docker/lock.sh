#!/usr/bin/env bash
# Regenerate the images' locked dependencies after a change to pyproject.toml or
# docker/mlflow-server.in: exact versions with their hashes, for Python 3.11 and 3.12 on any
# platform (the TensorFlow base image decides which). Needs uv (`pip install uv`).
# The server's lock is constrained by the workers', so both run the same MLflow.
set -euo pipefail
cd "$(dirname "$0")/.."
compile=(uv pip compile --universal --python-version 3.11 --generate-hashes --quiet)
"${compile[@]}" pyproject.toml --extra postgres --extra ray -o docker/requirements.lock
"${compile[@]}" docker/mlflow-server.in -c docker/requirements.lock -o docker/mlflow-server.lock
