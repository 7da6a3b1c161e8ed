"""What a 30 s MLflow server outage costs a training run: speed, points, and the spool on disk.

    python bench/tracking_outage.py        # results in bench/results/tracking_outage.json

The MNIST MLP trains 60 epochs of 200 steps (12,000 steps, 50 per hand-over) against a real
`mlflow server` on a fresh PostgreSQL database (127.0.0.1:5432), twice: once with the server
up throughout, once with the server SIGKILLed 10 s after the first steps reached it and
started again 30 s later. `steps.csv` (written by the same writer process) is sampled every
half second, so the training speed is measured in the same window of both runs (10 to 40 s
after the first step: the outage), before and after it, and the spool's size while the
server is away. Afterwards PostgreSQL is asked how many points each
run holds. Each case is written to the JSON as it finishes; a case already there is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from trainer.data import data_root  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "tracking_outage.json"
EPOCHS, PER_EPOCH, FLUSH = 60, 200, 50
OUTAGE_S, BEFORE_S = 30.0, 10.0
DATA = data_root(base=ROOT)  # as python -m trainer finds it
log = logging.getLogger("bench")


def database():
    import psycopg2

    name = f"lrlab_outage_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    admin.close()
    return name


def counts(name):
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=name) as db:
        cursor = db.cursor()
        cursor.execute(
            "SELECT key, count(*), count(DISTINCT step) FROM metrics WHERE key LIKE 'train/%' "
            "GROUP BY key"
        )
        return {key: [n, distinct] for key, n, distinct in cursor.fetchall()}


class Server:
    def __init__(self, name, folder, port):
        self.args = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
            str(port), "--backend-store-uri",
            f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}",
            "--artifacts-destination", str(folder / "artifacts"),
        ]  # fmt: skip
        self.uri, self.folder, self.process = f"http://127.0.0.1:{port}", folder, None

    def start(self):
        self.process = subprocess.Popen(
            self.args,
            cwd=self.folder,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2)
                return
            except OSError:
                time.sleep(0.5)

    def kill(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def rows(path):
    try:
        with open(path, "rb") as f:
            return max(f.read().count(b"\n") - 1, 0)
    except OSError:
        return 0


def one(outage):
    from tests.project import free_port

    folder = Path(tempfile.mkdtemp(prefix="lrlab-outage-"))
    name = database()
    server = Server(name, folder, free_port())
    server.start()
    run_dir = folder / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "LRLAB_DATA_DIR": str(DATA)}
    trainer = subprocess.Popen(
        [
            sys.executable, "-m", "trainer", "model=mlp", f"trainer.epochs={EPOCHS}",
            f"trainer.limit_train_batches={PER_EPOCH}", f"tracking.flush_every_steps={FLUSH}",
            f"tracking.uri={server.uri}", "sink=[mlflow,csv]", f"hydra.run.dir={run_dir}",
            "trainer.checkpoint_every=null",
        ],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    samples, spool_bytes = [], 0
    first = killed = restarted = None
    while trainer.poll() is None:
        now, done = time.monotonic(), rows(run_dir / "steps.csv")
        samples.append((now, done))
        if done and first is None:
            first = now
        if outage and first and killed is None and now - first >= BEFORE_S:
            server.kill()
            killed = (now, done)
        if killed and restarted is None:
            spool = run_dir / "mlflow_spool.jsonl"
            spool_bytes = max(spool_bytes, spool.stat().st_size if spool.exists() else 0)
            if now - killed[0] >= OUTAGE_S:
                restarted = (now, done)
                server.start()
        time.sleep(0.5)
    end = samples[-1]
    server.kill()

    def speed(a, b):
        return round((b[1] - a[1]) / (b[0] - a[0]), 1)

    start = next(s for s in samples if s[1] > 0)
    trained = next(s for s in samples if s[1] >= EPOCHS * PER_EPOCH)  # the last step's time

    def at(seconds):
        return next(s for s in samples if s[0] >= start[0] + seconds)

    window = (at(BEFORE_S), at(BEFORE_S + OUTAGE_S))
    result = {
        "exit_status": trainer.returncode,
        "steps": EPOCHS * PER_EPOCH,
        "training_s": round(trained[0] - start[0], 1),
        "steps_per_s_training": speed(start, trained),
        "steps_per_s_10_to_40_s": speed(*window),
        "ended_s_after_last_step": round(end[0] - trained[0], 1),
        "points_in_postgresql": counts(name),
    }
    if outage:
        result.update(
            {
                "outage_s": OUTAGE_S,
                "steps_per_s_before": speed(start, killed),
                "steps_per_s_after": speed(restarted, trained),
                "steps_trained_during_outage": restarted[1] - killed[1],
                "largest_spool_bytes": spool_bytes,
                "spool_bytes_per_point": round(spool_bytes / (3 * restarted[1]), 1),
                "spool_left": (run_dir / "mlflow_spool.jsonl").exists(),
            }
        )
    return result


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sys.path.insert(0, str(ROOT))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    for case, outage in (("server_up", False), ("server_killed_30s", True)):
        if case in results:
            log.info("%s: done already", case)
            continue
        log.info("%s ...", case)
        results[case] = one(outage)
        log.info("%s: %s", case, results[case])
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
