#!/bin/sh
# The MLflow basic-auth app's users and permissions, in their own database beside the runs'.
# PostgreSQL's image runs this once, when its data volume is empty.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -c "CREATE DATABASE mlflow_auth"
