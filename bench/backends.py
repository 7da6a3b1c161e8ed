"""Throughput on each Keras backend: lrlab against bare Keras on the same backend, and each
backend's lrlab against bare Keras on TensorFlow (the default before backends could be chosen).

    python bench/backends.py                                  # CNN and MLP, 5 repetitions
    python bench/backends.py --models mlp --backends tensorflow jax --reps 3

Keras picks its backend once per process, so every measurement is one process of
`bench/throughput.py --backend B --reps 1 --variants a b` (bare Keras, then lrlab with
every step to MLflow and TensorBoard). A repetition runs each backend once, in an order
that rotates from one repetition to the next; ratios are taken within a repetition (its
runs are back to back on this noisy machine), then the median over repetitions and the
spread (min-max) are reported. Each finished process is appended to the JSON file at once,
and a run of this script continues from what that file already holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.backends")
BACKENDS = ["tensorflow", "jax", "torch"]


def throughput_results(backend, model, steps, epochs, reps=1, show_output=False):
    """`bench/throughput.py --backend B --variants a b` in a process of its own: its JSON
    results for `model` (bare Keras, "a", and lrlab, "b"). `bench/gpu_check.py` uses it too."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "one.json"
        command = [
            sys.executable,
            str(ROOT / "bench" / "throughput.py"),
            f"--backend={backend}",
            "--models",
            model,
            "--variants",
            "a",
            "b",
            "--reps",
            str(reps),
            "--steps",
            str(steps),
            "--epochs",
            str(epochs),
            "--json",
            str(out),
        ]
        subprocess.run(command, check=True, capture_output=not show_output, text=True)
        return json.loads(out.read_text())["results"][model]


def measure(backend, model, steps, epochs):
    """{variant: steps/s, "logged_every_step": bool} of one `throughput.py` process."""
    result = throughput_results(backend, model, steps, epochs)
    return {
        "bare": result["a"]["median_steps_per_sec"],
        "lrlab": result["b"]["median_steps_per_sec"],
        "logged_every_step": result["b"]["logged_every_step"],
    }


def summary(records, backends, models):
    """Per model and backend: median steps/s of each variant, lrlab/bare on the backend, and
    lrlab on the backend / bare Keras on TensorFlow, each ratio within a repetition."""
    out = {}
    for model in models:
        out[model] = {}
        reps = {}
        for r in records:
            if r["model"] == model:
                reps.setdefault(r["rep"], {})[r["backend"]] = r
        for backend in backends:
            mine = [rep[backend] for rep in reps.values() if backend in rep]
            if not mine:
                continue
            entry = {
                "bare_steps_per_sec": [m["bare"] for m in mine],
                "lrlab_steps_per_sec": [m["lrlab"] for m in mine],
                "lrlab_over_bare": [m["lrlab"] / m["bare"] for m in mine],
                "logged_every_step": all(m["logged_every_step"] for m in mine),
            }
            against_tf = [
                rep[backend]["lrlab"] / rep["tensorflow"]["bare"]
                for rep in reps.values()
                if backend in rep and "tensorflow" in rep
            ]
            if against_tf:
                entry["lrlab_over_bare_tensorflow"] = against_tf
            for key in list(entry):
                if isinstance(entry[key], list):
                    entry[f"median_{key}"] = statistics.median(entry[key])
                    entry[f"spread_{key}"] = [min(entry[key]), max(entry[key])]
            out[model][backend] = entry
    return out


def table(results):
    lines = [
        f"{'model':5} {'backend':10} {'bare':>8} {'lrlab':>8} {'lrlab/bare':>11} "
        f"{'lrlab/bare TF':>14}"
    ]
    for model, by_backend in results.items():
        for backend, e in by_backend.items():
            tf_ratio = e.get("median_lrlab_over_bare_tensorflow")
            lines.append(
                f"{model:5} {backend:10} {e['median_bare_steps_per_sec']:8.1f} "
                f"{e['median_lrlab_steps_per_sec']:8.1f} {e['median_lrlab_over_bare']:11.3f} "
                f"{'' if tf_ratio is None else f'{tf_ratio:14.2f}'}"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "mlp"], choices=["cnn", "mlp"])
    parser.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run, the first untimed")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "backends.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = Path(args.json)
    report = json.loads(path.read_text()) if path.exists() else {}
    settings = {"steps_per_epoch": args.steps, "epochs": args.epochs, "batch_size": 32}
    if report.get("settings") != settings:
        report = {"settings": settings, "records": []}
    report["command"] = " ".join(["python bench/backends.py", *(argv or sys.argv[1:])])
    report["machine"] = f"{os.cpu_count()} CPUs"
    done = {(r["model"], r["rep"], r["backend"]) for r in report["records"]}
    for model in args.models:
        for rep in range(args.reps):
            shift = rep % len(args.backends)
            for backend in args.backends[shift:] + args.backends[:shift]:
                if (model, rep, backend) in done:
                    continue
                speeds = measure(backend, model, args.steps, args.epochs)
                report["records"].append({"model": model, "rep": rep, "backend": backend, **speeds})
                report["results"] = summary(report["records"], args.backends, args.models)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(report, indent=2) + "\n")
                log.info("%s rep %d %s: %s", model, rep, backend, speeds)
    report["results"] = summary(report["records"], args.backends, args.models)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    log.info("\n%s\nwritten to %s", table(report["results"]), path)
    return report


if __name__ == "__main__":
    main()
