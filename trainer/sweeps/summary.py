"""A sweep's summary, from the trials' `trial.json` files: `trials.csv`, the best trial
(tags and metrics of the parent run), `sweep_curves.png` and the best trial's model."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from trainer.choices import MINIMIZED
from trainer.export import FOLDER as MLFLOW_FOLDER
from trainer.sweeps.trial import TRIAL_FILE, read_sweep, short
from trainer.tracking import metadata

log = logging.getLogger(__name__)


@dataclass
class Summary:
    trials: list = field(default_factory=list)  # the trial.json records, by trial number
    best: dict | None = None
    metric: str = "test/accuracy"

    def count(self, status):
        return sum(t["status"] == status for t in self.trials)

    def describe(self):
        counts = [f"{self.count('FINISHED')} finished"]
        counts += [
            f"{self.count(s)} {s.lower()}"
            for s in ("PRUNED", "FAILED", "KILLED")
            if s != "PRUNED" or self.count(s)
        ]
        text = f"{len(self.trials)} trials ({', '.join(counts)})"
        if self.best is not None:
            text += f"; best #{self.best['number']} {self.metric}={self.best_value():.4g}"
        return text

    def best_value(self):
        return self.best["metrics"][self.metric]


def load(sweep_dir, metric):
    """The trials' records and the best FINISHED one by `metric` (lower is better for a
    loss, higher otherwise)."""
    trials = []
    for path in sorted(Path(sweep_dir).rglob(TRIAL_FILE)):
        try:
            trials.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            log.error("unreadable %s: %s", path, err)
    trials.sort(key=lambda t: t["number"])
    scored = [t for t in trials if t["status"] == "FINISHED" and _finite(t["metrics"].get(metric))]
    pick = min if metric in MINIMIZED else max
    best = pick(scored, key=lambda t: t["metrics"][metric]) if scored else None
    return Summary(trials, best, metric)


def write(sweep_dir, writer, metric):
    """Write the summary files into `sweep_dir` and hand them, the best trial's tags and
    metrics and its model to the parent run's `writer`; returns the `Summary`."""
    sweep_dir = Path(sweep_dir)
    found = load(sweep_dir, metric)
    table = write_table(found.trials, sweep_dir / "trials.csv")
    kept = [table]
    plot = plot_curves(found.trials, sweep_dir / "sweep_curves.png")
    if plot is not None:
        kept.append(plot)
    optuna_info = read_sweep(sweep_dir).get("optuna")
    if optuna_info:
        from trainer.sweeps.optuna_search import plots

        kept += plots(optuna_info, sweep_dir)
    writer.artifacts(kept)
    values = {
        "sweep/trials": len(found.trials),
        "sweep/finished": found.count("FINISHED"),
        "sweep/failed": found.count("FAILED"),
        "sweep/pruned": found.count("PRUNED"),
    }
    tags = {
        "lrlab.sweep.failed_trials": ",".join(
            str(t["number"]) for t in found.trials if t["status"] == "FAILED"
        ),
        "lrlab.sweep.optimized_metric": metric,
    }
    if found.best is not None:
        best = found.best
        values.update({f"best/{k}": v for k, v in best["metrics"].items() if _finite(v)})
        tags.update(
            {
                "lrlab.sweep.best_trial": str(best["number"]),
                "lrlab.sweep.best_run": best["run_name"],
                "lrlab.sweep.best_overrides": " ".join(best["overrides"]),
                "lrlab.sweep.best_run_id": str(best["refs"].get("mlflow", {}).get("run_id", "")),
                **metadata.sweep_summary_note(found.describe(), best["overrides"]),
            }
        )
        model = Path(best["dir"]) / "model.keras"
        if model.exists():
            mlflow_dir = Path(best["dir"]) / MLFLOW_FOLDER
            step = int(best["metrics"].get("trained_steps", 0))
            writer.model("best_trial", model, mlflow_dir if mlflow_dir.exists() else None, step)
    _drop_losers(found)
    writer.scalars(values, 0)
    writer.tags(tags)
    log.info("sweep summary: %s; %s", found.describe(), table)
    return found


def _drop_losers(found):
    """With `trainer.models=best` (a sweep's default), only the best trial keeps its model."""
    for t in found.trials:
        if t is not found.best and t.get("models") == "best":
            (Path(t["dir"]) / "model.keras").unlink(missing_ok=True)
            shutil.rmtree(Path(t["dir"]) / MLFLOW_FOLDER, ignore_errors=True)


def write_table(trials, path):
    """trials.csv: one row per trial: number, run, status, overrides, final metrics, steps,
    wall time, error."""
    metrics = sorted({k for t in trials for k in t["metrics"] if k != "trained_steps"})
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            [
                "trial",
                "run_name",
                "status",
                "overrides",
                *metrics,
                "trained_steps",
                "wall_s",
                "error",
            ]
        )
        for t in trials:
            out.writerow(
                [
                    t["number"],
                    t["run_name"],
                    t["status"],
                    " ".join(t["overrides"]),
                    *(t["metrics"].get(k, "") for k in metrics),
                    t["metrics"].get("trained_steps", ""),
                    "" if t["wall_s"] is None else f"{t['wall_s']:.1f}",
                    t["error"] or "",
                ]
            )
    return path


def plot_curves(trials, path):
    """`train/lr` against the step and `epoch/val_accuracy` against the epoch, one line per
    trial, from the trials' CSV sink files; None when no trial has them."""
    curves, finished = [], []
    for t in trials:
        files = t["refs"].get("csv", {})
        steps, scalars = Path(files.get("path", "-")), Path(files.get("scalars", "-"))
        if not steps.exists():
            continue
        label = " ".join([f"#{t['number']}", *short(t["swept"])])
        curves.append((label, _columns(steps, "step", "lr"), _epochs(scalars)))
        if t["status"] == "FINISHED":
            finished += curves[-1][2][1]
    if not curves:
        log.info("no trial has steps.csv (sink.csv off): no sweep_curves.png")
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.4), dpi=110)
    for label, (steps, lrs), (epochs, accuracy) in curves:
        left.plot(steps, lrs, lw=1.2, label=label)
        right.plot(epochs, accuracy, marker="o", lw=1.2, label=label)
    left.set(xlabel="optimizer step", ylabel="learning rate (train/lr)", title="rates used")
    right.set(xlabel="epoch", ylabel="epoch/val_accuracy", title="validation accuracy")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.xaxis.get_major_locator().set_params(integer=True)
    if finished:  # zoom on the finished trials; a diverged one would flatten them
        low, high = min(finished), max(finished)
        right.set_ylim(low - 0.1 * (high - low + 0.01), high + 0.05 * (high - low + 0.01))
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _columns(path, x, y):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [int(r[x]) for r in rows], [float(r[y]) for r in rows]


def _epochs(path, name="epoch/val_accuracy"):
    if not path.exists():
        return [], []
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r["name"] == name]
    return [int(r["step"]) for r in rows], [float(r["value"]) for r in rows]


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)
