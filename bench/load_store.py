"""Load on a tracking store as lrlab's runs make it:

    python bench/load_store.py --uri http://localhost:5000 --runs 8 --steps 5000

N runs at once, each through its own writer process and MLflow sink (the code a training run
uses), each handing over `steps` per-step rows (`train/lr`, `train/loss`, `train/mean_iou`)
`flush_every` at a time, as fast as the store takes them. No training: the rows are made up,
so that what is measured is the store and the tracking path, not TensorFlow. Then every run is
read back: each must hold every step once per metric.

Use it to size a team's MLflow server (docs/deploy.md) or to check a store before a big sweep.
A load test, not part of a run: it lives with the benchmarks (`bench/tracking_load.py`
measures the stores with it), beside the project, not in the installed package.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from trainer.config.errors import ConfigError
from trainer.tracking.rows import STEP_METRICS
from trainer.tracking.sinks.base import RunInfo
from trainer.tracking.sinks.mlflow_sink import MlflowSink
from trainer.tracking.writer import WriterProcess


@dataclass
class Load:
    """What `drive` did: the runs, how many points, and how long until all were stored."""

    uri: str
    run_ids: list
    steps: int
    points: int
    seconds: float

    @property
    def points_per_s(self):
        return self.points / self.seconds


# How long a run may take to start (its writer process up, its MLflow run created) before
# the load gives up on the others; SQLite serialises the creations, each under a second.
START_TIMEOUT_S = 300.0


def rows(start, count):
    """`count` made-up rows from step `start`, in the writer's layout (`rows.COLUMNS`)."""
    step = np.arange(start, start + count, dtype=np.float64)
    return np.column_stack([step, 1e-3 + 1e-6 * step, 2.3 / (1 + step), step / (step + 100)])


def drive(uri, runs, steps, flush_every=200, experiment="lrlab-load"):
    """`runs` runs logged at once into the store at `uri`; returns a `Load`.

    The clock starts once every run has started (its writer process up, its MLflow run
    created) and stops when the last one has closed, which returns only once its writer has
    stored every row.
    """
    from mlflow.tracking import MlflowClient

    MlflowSink(uri, experiment).check()  # fail in seconds when the store cannot be reached
    # The store and experiment exist before the runs start, as a sweep's parent run makes
    # them: several processes creating one SQLite file's tables at once collide.
    client = MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment)

    ready = threading.Barrier(runs)
    began, waiting, writers = [], set(range(runs)), {}

    def one(number):
        writer = writers[number] = WriterProcess({"mlflow": MlflowSink(uri, experiment)}, True)
        with tempfile.TemporaryDirectory() as folder:
            try:
                started = writer.start(RunInfo(f"load #{number}", folder))
                waiting.discard(number)
                if ready.wait(timeout=START_TIMEOUT_S) == 0:  # every run started: go
                    began.append(time.perf_counter())
            except BaseException:
                # One run that cannot start must not leave the others waiting for it.
                ready.abort()
                writer.close("FAILED")
                for late in waiting - {number}:  # a start that never answers
                    if late in writers:
                        writers[late].kill()
                raise
            for start in range(0, steps, flush_every):
                writer.steps(rows(start, min(flush_every, steps - start)))
            writer.close("FINISHED")
        return started["mlflow"].ref["run_id"]

    with ThreadPoolExecutor(runs) as pool:
        futures = [pool.submit(one, number) for number in range(runs)]
    errors = [f.exception() for f in futures if f.exception() is not None]
    # The run that failed, not the others it stopped at the barrier.
    for err in sorted(errors, key=lambda e: isinstance(e, threading.BrokenBarrierError)):
        if not isinstance(err, threading.BrokenBarrierError):
            raise err
        late = ", ".join(f"#{n}" for n in sorted(waiting))
        raise ConfigError(
            f"not every load run started within {START_TIMEOUT_S:.0f} s; not started: {late}",
            fix=f"check that {uri} answers and is not locked by another process",
        )
    run_ids = [f.result() for f in futures]
    seconds = time.perf_counter() - began[0]
    return Load(uri, run_ids, steps, runs * steps * len(STEP_METRICS), seconds)


def missing(load):
    """{(run_id, metric): what is wrong} for every series that lacks a step or repeats one."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=load.uri)
    wrong = {}
    for run_id in load.run_ids:
        for key in STEP_METRICS.values():
            steps = sorted(p.step for p in client.get_metric_history(run_id, key))
            if steps != list(range(load.steps)):
                wrong[(run_id, key)] = f"{len(steps)} points, {len(set(steps))} distinct steps"
    return wrong


APP = "python bench/load_store.py"


def positive(text):
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def main(argv=None):
    from trainer.config.console import input_errors_reported

    parser = argparse.ArgumentParser(
        prog=APP,
        description="Log STEPS made-up steps from RUNS runs at once through lrlab's writer "
        "processes into the store, read every run back, and report the points per second "
        "stored. Exit status 1 when a point is missing or repeated.",
    )
    parser.add_argument(
        "--uri",
        default=os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db",
        help="the MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    parser.add_argument("--runs", type=positive, default=8, help="runs at once (default 8)")
    parser.add_argument("--steps", type=positive, default=5000, help="steps per run (default 5000)")
    parser.add_argument(
        "--flush-every", type=positive, default=200, help="steps per hand-over (default 200)"
    )
    parser.add_argument(
        "--experiment", default="lrlab-load", help="where the runs go (default lrlab-load)"
    )
    args = parser.parse_args(argv)
    with input_errors_reported(APP):
        done = drive(args.uri, args.runs, args.steps, args.flush_every, args.experiment)
    wrong = missing(done)
    sys.stdout.write(
        f"{args.runs} runs x {args.steps} steps x 3 metrics = {done.points} points stored in "
        f"{done.seconds:.1f} s: {done.points_per_s:.0f} points/s into {args.uri}\n"
    )
    for (run_id, key), what in sorted(wrong.items()):
        sys.stdout.write(f"run {run_id} {key}: {what} (want {args.steps}, each once)\n")
    sys.stdout.write("every point present, each once\n" if not wrong else "points lost\n")
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
