"""What the tracking stores sustain under lrlab's writers: points per second stored.

    python bench/tracking_load.py          # results in bench/results/tracking_load.json

(a) 8 runs at once into the team stack's MLflow server (`docker/bin/mlflow-server`, basic
    auth, on a fresh database of the PostgreSQL at 127.0.0.1:5432, 2 server workers), with
    the stack's default auth cache (a checked password trusted for 60 s) and without one
    (MLflow's default: the password hashed on every request);
(b) 4 runs at once into one SQLite file.

Each run hands over 5000 made-up steps (3 metrics each) 200 at a time through its own
writer process and MLflow sink, as a training run does (`bench/load_store.py`); the
clock runs from every run started to the last one closed; then every run is read back.
Each case is written to the JSON as it finishes; a case already there is not run again.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load_store import drive, missing  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "tracking_load.json"
STEPS, FLUSH_EVERY = 5000, 200
log = logging.getLogger("bench")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(uri, runs, env=None):
    os.environ.update(env or {})
    done = drive(uri, runs, STEPS, FLUSH_EVERY)
    wrong = missing(done)
    return {
        "runs": runs,
        "steps_per_run": STEPS,
        "flush_every": FLUSH_EVERY,
        "points": done.points,
        "seconds": round(done.seconds, 2),
        "points_per_s": round(done.points_per_s),
        "series_with_a_missing_or_repeated_point": len(wrong),
    }


def server_on_postgres(folder):
    """The stack's MLflow server on a fresh PostgreSQL database; (uri, account env, stop)."""
    import psycopg2

    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    admin.autocommit = True
    names = [f"lrlab_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        admin.cursor().execute(f"CREATE DATABASE {name}")
    port = free_port()
    password = "bench-password-0123"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{names[0]}",
        "MLFLOW_AUTH_DATABASE_URI": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{names[1]}",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
        "MLFLOW_AUTH_DEFAULT_PERMISSION": "EDIT",
        "MLFLOW_ALLOWED_HOSTS": "localhost:*",
        "MLFLOW_ARTIFACTS_DESTINATION": str(Path(folder) / "mlartifacts"),
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": "2",
    }
    server = subprocess.Popen(
        [ROOT / "docker" / "bin" / "mlflow-server"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"http://localhost:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(1)

    def stop():
        server.terminate()
        server.wait(timeout=30)
        for name in names:
            admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()

    account = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
    return uri, account, stop


def main():
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault(
        "machine",
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}",
    )
    cases = results.setdefault("cases", {})
    with tempfile.TemporaryDirectory() as folder:
        for ttl in ("60", "0"):
            name = f"server_postgresql_8_runs_auth_cache_{ttl}s"
            if name in cases:
                continue
            os.environ["MLFLOW_AUTH_CACHE_TTL_SECONDS"] = ttl
            uri, account, stop = server_on_postgres(folder)
            try:
                cases[name] = measure(uri, 8, account)
            finally:
                stop()
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        if "sqlite_4_runs" not in cases:
            uri = f"sqlite:///{folder}/mlflow.db"
            cases["sqlite_4_runs"] = measure(uri, 4)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    for name, case in cases.items():
        log.info(
            "%s: %d points in %.1f s, %d points/s, %d series wrong",
            name,
            case["points"],
            case["seconds"],
            case["points_per_s"],
            case["series_with_a_missing_or_repeated_point"],
        )


if __name__ == "__main__":
    main()
