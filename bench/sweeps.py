"""What sweeps cost on this machine: pruning's savings, and parallel against sequential trials.

    python bench/sweeps.py                 # both, results in bench/results/sweeps.json
    python bench/sweeps.py --only pruning  # one of: pruning, parallel

(a) pruning: the same seeded Optuna search (`sweep=clr_optuna` on the Fashion-MNIST MLP with
    SGD) with the median pruner and without one: steps trained, wall time, the best
    validation-chosen test accuracy, and the wall time until the best trial ended.
(b) parallel: the same grid of trials, 2 at a time in fresh processes with 1 thread each
    (`hydra/launcher=local_parallel`) against one after another with 2 threads
    (`trainer.threads=2`): trials per hour.

Every case is a real `python -m trainer -m ...` in its own folder; each finished case is
written to the JSON at once, and a case already there is not run again (resume by running
the same command).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "sweeps.json"
log = logging.getLogger("bench.sweeps")

SETUP = [
    "dataset=fashion_mnist",
    "model=mlp",
    "optimizer=sgd",
    "trainer.limit_train_batches=300",
    "tracking.uri=sqlite:///{folder}/mlflow.db",
    "hydra.sweep.dir={folder}/sweep",
]
SEARCH = [
    "sweep=clr_optuna",
    "optimizer.learning_rate=tag(log, interval(0.01, 1))",
    "hydra.sweeper.n_trials=10",
    "trainer.epochs=4",
]
CASES = {
    "pruning/median": [*SEARCH],
    "pruning/none": [*SEARCH, "hydra.sweeper.pruner=null"],
    "parallel/2x1thread": [
        "schedule=clr",
        "schedule.max_lr=0.05,0.1,0.2,0.4",
        "trainer.epochs=2",
        "hydra/launcher=local_parallel",
        "hydra.launcher.parallel=2",
        "hydra.launcher.cpus_per_task=1",
    ],
    "parallel/1x2threads": [
        "schedule=clr",
        "schedule.max_lr=0.05,0.1,0.2,0.4",
        "trainer.epochs=2",
        "trainer.threads=2",
    ],
}


def run_case(name, folder):
    folder.mkdir(parents=True, exist_ok=True)
    args = [a.format(folder=folder) for a in [*SETUP, *CASES[name]]]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "-m", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return summarize(folder / "sweep", wall)


def summarize(sweep_dir, wall):
    trials = []
    for path in sorted(sweep_dir.glob("*/trial.json")):
        record = json.loads(path.read_text())
        steps_csv = path.parent / "steps.csv"
        steps = sum(1 for _ in steps_csv.open()) - 1 if steps_csv.exists() else 0
        trials.append((record, steps))
    trials.sort(key=lambda t: t[0]["number"])
    with open(sweep_dir / "trials.csv") as f:
        table = list(csv.DictReader(f))
    finished = [(r, s) for r, s in trials if r["status"] == "FINISHED"]
    best = max(finished, key=lambda t: t[0]["metrics"]["test/accuracy"], default=None)
    elapsed, best_at = 0.0, None
    for record, _ in trials:  # trials ran one after another (or in pairs) in this order
        elapsed += record["wall_s"] or 0.0
        if best is not None and record is best[0]:
            best_at = elapsed
    return {
        "wall_s": round(wall, 1),
        "trials": len(trials),
        "statuses": {
            s: sum(r["status"] == s for r, _ in trials) for s in ("FINISHED", "PRUNED", "FAILED")
        },
        "steps_trained": sum(s for _, s in trials),
        "best_test_accuracy": best[0]["metrics"]["test/accuracy"] if best else None,
        "best_trial": best[0]["number"] if best else None,
        "trial_seconds_until_best": round(best_at, 1) if best_at else None,
        "trials_per_hour": round(3600 * len(trials) / wall, 1),
        "rows": len(table),
    }


def main():
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["pruning", "parallel"])
    parser.add_argument("--work", default="/tmp/lrlab-bench-sweeps", help="scratch folder")
    parser.add_argument("--json", default=str(RESULTS))
    args = parser.parse_args()
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.exists() else {}
    results.setdefault("cases", {})
    results["machine"] = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    results["setup"] = SETUP[:4]
    for name in CASES:
        if args.only and not name.startswith(args.only):
            continue
        if name in results["cases"]:
            log.info("%s: done already (%s)", name, results["cases"][name])
            continue
        log.info("%s: running", name)
        results["cases"][name] = {"args": CASES[name], **run_case(name, Path(args.work) / name)}
        log.info("%s: %s", name, results["cases"][name])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1))
    log.info("written to %s", path)


if __name__ == "__main__":
    main()
