"""Training throughput with per-step logging: lrlab against bare Keras and two peers.

    python bench/throughput.py                      # CNN and MLP, 5 repetitions
    python bench/throughput.py --models mlp --reps 3 --steps 300
    python bench/throughput.py --backend jax        # on another Keras backend

For each model on real MNIST (batch 32, Adam, cosine schedule, accuracy metric) it
alternates repetitions of:

  (a) bare Keras: `model.fit` with no callbacks, `verbose=0`;
  (b) lrlab: `trainer.run` with per-step `train/lr`, `train/loss`, `train/mean_iou` to
      MLflow (SQLite) and TensorBoard, plus its epoch metrics;
  (c) MLflow's Keras autologging with `log_every_n_steps=1`;
  (d) Keras' TensorBoard callback with `update_freq=1`.

`--backend` runs every variant on that Keras backend (bare Keras on it too). (c) and (d)
need TensorFlow and run on it only. On TensorFlow the batches are `tf.data` pipelines (as
lrlab trains there); on JAX and PyTorch bare Keras takes the NumPy arrays themselves, lrlab
its `PyDataset` (`trainer.batches`). `bench/backends.py` compares backends, alternating
them.

Each run trains `--epochs` epochs of `--steps` steps; the first epoch (tracing and graph
building) is left out, and each other epoch is timed by the same epoch-only callback in
every variant; a run's speed is the median over its timed epochs (single epochs on this
shared 2-core machine vary by 10-20 % even for bare Keras). Ratios to (a) are taken within
each repetition (the variants of one repetition run back to back), then the median over
repetitions is reported. After every
(b) run the benchmark reads MLflow and TensorBoard back and checks that each step's three
values are there once. Results are printed and written as JSON (`--json`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _backend(argv):
    """--backend NAME from the command line: Keras must know it before its first import."""
    for i, arg in enumerate(argv):
        if arg == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--backend="):
            return arg.split("=", 1)[1]
    return os.environ.get("KERAS_BACKEND", "tensorflow")


BACKEND = _backend(sys.argv[1:])
os.environ["KERAS_BACKEND"] = BACKEND

import keras  # noqa: E402
import mlflow  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

import trainer  # noqa: E402
from trainer.batches import batches  # noqa: E402
from trainer.config.build import from_config  # noqa: E402
from trainer.data import data_root  # noqa: E402

log = logging.getLogger("bench.throughput")
VARIANTS = {
    "a": "bare Keras, no callbacks",
    "b": "lrlab, every step to MLflow + TensorBoard",
    "c": "MLflow autolog, every step",
    "d": "Keras TensorBoard, update_freq=1",
}


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch. Only epoch hooks, so Keras keeps batch dispatch asynchronous."""

    def __init__(self):
        super().__init__()
        self.durations = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.durations.append(time.perf_counter() - self._start)


def config(model, steps, epochs, workdir):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "train",
            [
                f"model={model}",
                f"backend={BACKEND}",
                "schedule=cosine",
                f"trainer.limit_train_batches={steps}",
                f"trainer.epochs={epochs}",
                "dataset.val_size=0",
                "trainer.checkpoint=false",
                f"output_dir={workdir}/run",
                f"tracking.uri=sqlite:///{workdir}/mlflow.db",
                "tracking.strict=true",
            ],
        )


_DATA = {}


def keras_fit(cfg, callbacks):
    """(a), (c), (d): the same model, data, optimizer, schedule and metric, with plain fit."""
    t = cfg.trainer
    keras.backend.clear_session()
    keras.utils.set_random_seed(t.seed)
    if "mnist" not in _DATA:
        _DATA["mnist"] = instantiate(cfg.dataset).load()
    data = _DATA["mnist"]
    schedule = from_config(
        cfg, steps_per_epoch=t.limit_train_batches, run_steps=t.epochs * t.limit_train_batches
    )
    model = instantiate(cfg.model)
    model.compile(
        optimizer=instantiate(cfg.optimizer, learning_rate=schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=t.jit_compile,
    )
    if BACKEND != "tensorflow":  # Keras' own array adapter, shuffling every epoch
        n = t.limit_train_batches * t.batch_size
        x, y = data.x_train[:n], data.y_train[:n]
        model.fit(x, y, t.batch_size, t.epochs, verbose=0, callbacks=callbacks, shuffle=True)
        return
    train_ds = batches(
        data.x_train, data.y_train, t.batch_size, shuffle_seed=t.seed, limit=t.limit_train_batches
    )
    model.fit(train_ds, epochs=t.epochs, callbacks=callbacks, verbose=0, shuffle=False)


def run_variant(variant, model, steps, epochs):
    timer = EpochTimer()
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as workdir:
        cfg = config(model, steps, epochs, workdir)
        complete = None
        if variant == "a":
            keras_fit(cfg, [timer])
        elif variant == "b":
            trainer.run(cfg, {"model": model, "schedule": "cosine"}, extra_callbacks=[timer])
            complete = logged_completely(workdir, epochs * steps)
        elif variant == "c":
            mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
            mlflow.tensorflow.autolog(
                log_every_n_steps=1,
                log_models=False,
                log_datasets=False,
                checkpoint=False,
                silent=True,
            )
            try:
                with mlflow.start_run():
                    keras_fit(cfg, [timer])
            finally:
                mlflow.tensorflow.autolog(disable=True)
        elif variant == "d":
            board = keras.callbacks.TensorBoard(log_dir=f"{workdir}/tb", update_freq=1)
            keras_fit(cfg, [timer, board])
    timed = timer.durations[1:]  # the first epoch traces and builds the graph
    return statistics.median(steps / d for d in timed), complete


def logged_completely(workdir, steps):
    """Every step's three values once in MLflow and in TensorBoard."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("lrlab").experiment_id])
    board = EventAccumulator(f"{workdir}/run/tensorboard", size_guidance={"scalars": 0})
    board.Reload()
    want = list(range(steps))
    for key in ("train/lr", "train/loss", "train/mean_iou"):
        in_mlflow = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        in_board = [e.step for e in board.Scalars(key)]
        if in_mlflow != want or in_board != want:
            return False
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "mlp"], choices=["cnn", "mlp"])
    parser.add_argument("--backend", default=BACKEND, choices=["tensorflow", "jax", "torch"])
    on_tf = BACKEND == "tensorflow"  # (c) and (d) need TensorFlow
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS) if on_tf else ["a", "b"],
        choices=list(VARIANTS) if on_tf else ["a", "b"],
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run, the first untimed")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "throughput.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("trainer", "schedules", "mlflow", "alembic", "tensorboard"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("LRLAB_DATA_DIR", str(data_root(base=ROOT)))  # as python -m trainer

    results = {}
    for model in args.models:
        runs = {v: [] for v in args.variants}
        complete = []
        for rep in range(args.reps):
            order = (
                args.variants[rep % len(args.variants) :]
                + args.variants[: rep % len(args.variants)]
            )
            for variant in order:
                speed, ok = run_variant(variant, model, args.steps, args.epochs)
                runs[variant].append(speed)
                if ok is not None:
                    complete.append(ok)
                log.info(
                    "%s rep %d (%s): %.1f steps/s%s",
                    model,
                    rep,
                    variant,
                    speed,
                    "" if ok is None else f", logged completely: {ok}",
                )
        results[model] = summarise(runs, complete)

    report = {
        "command": " ".join(["python bench/throughput.py", *(argv or sys.argv[1:])]),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "backend": BACKEND,
        "versions": {
            BACKEND: _version(BACKEND),
            "keras": keras.__version__,
            "mlflow": mlflow.__version__,
            "python": platform.python_version(),
        },
        "settings": {
            "batch_size": 32,
            "steps_per_epoch": args.steps,
            "epochs": args.epochs,
            "timed_epochs": args.epochs - 1,
            "reps": args.reps,
        },
        "results": results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    log.info("\n%s\nwritten to %s", table(results), args.json)
    return report


def _version(name):
    from importlib.metadata import version

    return version(name)


def summarise(runs, complete):
    out = {}
    for variant, speeds in runs.items():
        entry = {
            "name": VARIANTS[variant],
            "steps_per_sec": speeds,
            "median_steps_per_sec": statistics.median(speeds),
        }
        if "a" in runs and variant != "a":
            ratios = [s / a for s, a in zip(speeds, runs["a"])]
            entry["ratio_to_a"] = ratios
            entry["median_ratio_to_a"] = statistics.median(ratios)
        if variant == "b":
            entry["logged_every_step"] = all(complete)
        out[variant] = entry
    return out


def table(results):
    lines = [f"{'model':5}  {'variant':48} {'steps/s':>8} {'ratio to (a)':>13}"]
    for model, variants in results.items():
        for variant, entry in variants.items():
            ratio = entry.get("median_ratio_to_a")
            lines.append(
                f"{model:5}  ({variant}) {entry['name']:44} "
                f"{entry['median_steps_per_sec']:8.1f} "
                f"{'' if ratio is None else f'{ratio:13.3f}'}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
