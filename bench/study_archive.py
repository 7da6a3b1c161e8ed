"""The study's runs in a small MLflow store committed with it, so that a reader can open them:

    mlflow ui --backend-store-uri sqlite:///bench/results/study/mlflow.db

The sweeps' own store (`outputs/study/mlflow.db`, about 1 GB of per-step metrics) stays on
the machine that ran them, and the study spans sessions on machines that do not keep it: the
runs of its early sweeps exist in no store any more. This archive is made from what the study
commits as it goes (`progress.jsonl`, `runs.jsonl`, `optuna.db`), one experiment per setup
(`lrlab-study-mnist_cnn`, `lrlab-study-fashion_mlp`):

- per sweep, a parent run named as the sweep (`mnist_cnn-long-one_cycle-10ep`, the name
  docs/results.md gives), its overrides as params, its id in the sweeps' store as the tag
  `lrlab.study.source_run_id`, its wall time as the run's duration;
- under it, per training run (seeds 1-3): the same params with its own seed, the final
  `test/accuracy` and `epoch/val_accuracy`, the test curve (`test/accuracy` every quarter
  epoch, in the runs that logged one) and about 200 points of `train/lr`, what the report
  reads; per search trial: its Optuna params, `val/accuracy` and the values it reported
  for pruning, and its state (pruned trials end KILLED).

MLflow gives the runs their ids, so the doc names the parents by name; `python bench/study.py
--report` adds only the sweeps the archive lacks, so ids already given stay put.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time

from bench.study import STATE_DIR, cached_runs, finished, optuna_study

log = logging.getLogger("bench.study_archive")
ARCHIVE = STATE_DIR / "mlflow.db"
SWEEP_TAG = "lrlab.study.sweep"
STATES = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "RUNNING": "KILLED"}


def _client(path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{path}")


# Overrides that say where the machine that ran a sweep kept its files, not what it trained.
MACHINE_KEYS = ("tracking.uri", "hydra.sweep.", "hydra.sweeper.storage")


def sweep_params(overrides):
    """{key: value} of a sweep's overrides, less where its machine kept its files."""
    params = {}
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        if not key.startswith(MACHINE_KEYS):
            params[key] = value
    return params


def _experiment(client, setup):
    name = f"lrlab-study-{setup}"
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    made = client.create_experiment(name)
    client.set_experiment_tag(
        made,
        "mlflow.note.content",
        f"The schedule study's runs on {setup} (docs/results.md), archived by "
        "bench/study_archive.py from bench/results/study/.",
    )
    return made


def _log(client, run_id, metrics=(), params=None, tags=None):
    from mlflow.entities import Metric, Param, RunTag

    stamp = int(time.time() * 1000)
    metrics = [Metric(k, float(v), stamp, int(s)) for k, v, s in metrics if _finite(v)]
    for start in range(0, max(1, len(metrics)), 1000):  # MLflow's batch limit
        client.log_batch(
            run_id,
            metrics=metrics[start : start + 1000],
            params=[Param(k, str(v)) for k, v in (params or {}).items()] if start == 0 else [],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()] if start == 0 else [],
        )


def _is_sqlite(path):
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def _finite(value):
    return value is not None and math.isfinite(float(value))


def _run(client, experiment, name, parent, start_ms, seconds, status, **logged):
    tags = {"mlflow.parentRunId": parent} if parent else {}
    run = client.create_run(experiment, start_time=start_ms, tags=tags, run_name=name)
    _log(client, run.info.run_id, **logged)
    end = start_ms + int(1000 * seconds) if _finite(seconds) else None
    client.set_terminated(run.info.run_id, status=status, end_time=end)
    return run.info.run_id


def _training_children(client, experiment, parent, entry, runs, start_ms):
    params = sweep_params(entry["overrides"])
    for facts in sorted(runs, key=lambda r: r["seed"]):
        metrics = [("test/accuracy", v, s) for s, v in facts["curve"] or ()]
        if not facts["curve"]:
            metrics.append(("test/accuracy", facts["test_accuracy"], facts["steps"] or 0))
        metrics += [("train/lr", v, s) for s, v in facts["lr"] or ()]
        metrics += [
            ("epoch/val_accuracy", facts["val_accuracy"], 0),
            ("lr_find/suggested_lr", facts["suggested_lr"], 0),
        ]
        _run(
            client,
            experiment,
            f"{entry['name']}-seed{facts['seed']}",
            parent,
            start_ms,
            facts["seconds"],
            facts["status"],
            metrics=metrics,
            params={**params, "trainer.seed": facts["seed"]},
            tags={"lrlab.study.source_run_id": facts["run_id"]},
        )


def _search_children(client, experiment, parent, entry):
    study = optuna_study(entry["name"])
    if study is None:
        log.warning("%s: no Optuna study in %s; its trials left out", entry["name"], STATE_DIR)
        return
    # What the trials share; the searched keys ("tag(log, interval(...))") get each trial's.
    fixed = {k: v for k, v in sweep_params(entry["overrides"]).items() if "(" not in v}
    for trial in study.trials:
        start = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        done = trial.datetime_complete.timestamp() if trial.datetime_complete else math.nan
        metrics = [("optuna/intermediate", v, s) for s, v in trial.intermediate_values.items()]
        if trial.value is not None:
            metrics.append(("val/accuracy", trial.value, 0))
        _run(
            client,
            experiment,
            f"{entry['name']}-trial{trial.number}",
            parent,
            int(1000 * start),
            done - start,
            STATES.get(trial.state.name, "FAILED"),
            metrics=metrics,
            params={**fixed, **trial.params},
            tags={"optuna.trial_state": trial.state.name, **trial.user_attrs},
        )


def archive(path=ARCHIVE, runs_file=None):
    """Add to the archive at `path` the sweeps of progress.jsonl it lacks (their runs from
    `runs_file`, runs.jsonl by default); the number added."""
    cached = cached_runs(runs_file)
    if path.exists() and not _is_sqlite(path):
        # A merge that kept conflict markers, a Git LFS pointer: nothing in it is lost by
        # making it again from the committed state, only its run ids change.
        raise SystemExit(
            f"{path} is not an SQLite file, so not the study's MLflow archive: delete it and "
            "run `python bench/study.py --report`, which makes it again from "
            f"{STATE_DIR}/ (progress.jsonl, runs.jsonl, optuna.db)"
        )
    client = _client(path)
    have = {
        r.data.tags[SWEEP_TAG]
        for r in client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            f"tags.`{SWEEP_TAG}` != ''",
            max_results=50000,
        )
    }
    experiments = {}
    added = 0
    for entry in finished().values():
        setup = entry["setup"]
        if entry["name"] in have:
            continue
        runs = cached.get(entry["parent_run_id"])
        if entry["phase"] != "search" and runs is None:
            continue  # its runs were never read from a store (collect() warns)
        if setup not in experiments:
            experiments[setup] = _experiment(client, setup)
        start_ms = int(time.time() * 1000)
        parent = _run(
            client,
            experiments[setup],
            entry["name"],
            None,
            start_ms,
            entry["seconds"],
            "FINISHED" if entry["rc"] == 0 else "FAILED",
            params=sweep_params(entry["overrides"]),
            tags={
                SWEEP_TAG: entry["name"],
                "lrlab.study.phase": entry["phase"],
                "lrlab.study.family": entry["family"],
                "lrlab.study.epochs": entry["budget"],
                "lrlab.study.source_run_id": entry["parent_run_id"],
            },
        )
        if entry["phase"] == "search":
            _search_children(client, experiments[setup], parent, entry)
        else:
            _training_children(client, experiments[setup], parent, entry, runs, start_ms)
        have.add(entry["name"])
        added += 1
    if added:  # MLflow's writes leave free pages; the file is committed
        with sqlite3.connect(path) as db:
            db.execute("VACUUM")
    log.info("archive %s: %d sweeps added", path, added)
    return added
