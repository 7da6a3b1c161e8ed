"""lrlab on one GPU with JAX: speed against bare Keras, time to accuracy, trials sharing it.

    python bench/gpu_check.py                       # on the GPU machine (bench/gpu_check.sh)
    python bench/gpu_check.py --quick               # the same steps, small, on a CPU

Three measurements, each written to `--out` (JSON) as soon as it is done:

(a) `bench/throughput.py --backend jax --variants a b`: bare Keras and lrlab (every step's
    rate, loss and MeanIoU to MLflow and TensorBoard), steps/s, both models;
(b) time to 99.2 % test accuracy on MNIST with the CNN and one-cycle, from the start of the
    `python -m trainer` process to the MLflow timestamp of the first test-curve point at or
    above it (`trainer.test_every` steps apart, on the whole test set);
(c) 1, 2, 4 and 8 MNIST MLP trials at once, each a `python -m trainer` process with
    `XLA_PYTHON_CLIENT_MEM_FRACTION` = 0.9 / trials of the GPU's memory: trials per hour and
    each trial's time against one alone.

The device (GPU or CPU) JAX runs on is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
logger = logging.getLogger("bench.gpu_check")

from bench.backends import throughput_results  # noqa: E402


def trainer(args, cwd, env=None):
    """A `python -m trainer` process on JAX (not waited for)."""
    environment = {**os.environ, "KERAS_BACKEND": "jax", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", "backend=jax", *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(proc, what):
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{out[-3000:]}")
    return out


def device():
    code = "import jax; d = jax.devices()[0]; print(d.platform, d.device_kind)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()[-300:]


def throughput(models, steps, epochs, reps):
    results = {}
    for model in models:
        r = throughput_results("jax", model, steps, epochs, reps, show_output=True)
        results[model] = {
            "bare_steps_per_sec": r["a"]["median_steps_per_sec"],
            "lrlab_steps_per_sec": r["b"]["median_steps_per_sec"],
            "lrlab_over_bare": r["b"]["median_ratio_to_a"],
            "logged_every_step": r["b"]["logged_every_step"],
        }
    return results


def time_to_accuracy(target, epochs, test_every):
    """Seconds from process start to the first test-curve point >= target."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        started = time.time()
        proc = trainer(
            [
                "model=cnn",
                "schedule=one_cycle",
                f"trainer.epochs={epochs}",
                f"trainer.test_every={test_every}",
                "trainer.models=none",
                "sink=[mlflow,csv]",
                "hydra.run.dir=run",
            ],
            tmp,
        )
        finished(proc, "the time-to-accuracy run")
        wall = time.time() - started
        client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
        (run,) = client.search_runs([client.get_experiment_by_name("lrlab").experiment_id])
        points = sorted(
            client.get_metric_history(run.info.run_id, "test/accuracy"), key=lambda m: m.step
        )
    reached = next((p for p in points if p.value >= target), None)
    return {
        "target": target,
        "reached": reached is not None,
        "seconds_from_process_start": None
        if reached is None
        else reached.timestamp / 1000 - started,
        "at_step": None if reached is None else reached.step,
        "final_test_accuracy": points[-1].value if points else None,
        "run_wall_seconds": wall,
        "settings": {"model": "cnn", "schedule": "one_cycle", "epochs": epochs},
    }


def concurrent(counts, steps, epochs):
    """Each count of MLP trials started together; wall time of the batch."""
    out = {}
    for count in counts:
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / count:.3f}",
                "XLA_PYTHON_CLIENT_PREALLOCATE": "true",
            }
            started = time.time()
            procs = [
                trainer(
                    [
                        "model=mlp",
                        f"trainer.epochs={epochs}",
                        f"trainer.limit_train_batches={steps}",
                        "trainer.models=none",
                        "sink=[mlflow,csv]",
                        f"tracking.uri=sqlite:///{tmp}/trial{i}.db",
                        f"hydra.run.dir=trial{i}",
                    ],
                    tmp,
                    env,
                )
                for i in range(count)
            ]
            for i, proc in enumerate(procs):
                finished(proc, f"trial {i} of {count}")
            wall = time.time() - started
        out[str(count)] = {"wall_seconds": wall, "trials_per_hour": 3600 * count / wall}
        log(f"(c) {count} trial(s) at once: {wall:.1f} s")
    alone = out[str(counts[0])]["wall_seconds"]
    for entry in out.values():
        entry["per_trial_slowdown"] = entry["wall_seconds"] / alone
    return out


def log(message):
    logger.info("gpu_check: %s", message)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a CPU")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"))
    parser.add_argument("--parts", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quick = args.quick
    report = {
        "command": " ".join(["python bench/gpu_check.py", *(argv or sys.argv[1:])]),
        "device": device(),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        out.write_text(json.dumps(report, indent=2) + "\n")

    save()
    log(f"JAX device: {report['device']}")
    if "a" in args.parts:
        report["throughput"] = throughput(
            ["mlp", "cnn"], 100 if quick else 500, 2 if quick else 4, 1 if quick else 2
        )
        save()
        log(f"(a) {report['throughput']}")
    if "b" in args.parts:
        report["time_to_accuracy"] = time_to_accuracy(
            0.992, 1 if quick else 3, 500 if quick else 200
        )
        save()
        log(f"(b) {report['time_to_accuracy']}")
    if "c" in args.parts:
        report["concurrent_trials"] = concurrent(
            [1, 2] if quick else [1, 2, 4, 8], 100 if quick else 500, 1 if quick else 3
        )
        save()
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()
    log(f"written to {out}")


if __name__ == "__main__":
    main()
