"""Sweeps: one parent run per `python -m trainer -m ...`, every trial a child run.

Whatever the sweeper or launcher, the pieces meet through files in the sweep folder
(`hydra.sweep.dir`), which every launcher shares with its trials:

- `callback.SweepCallback` (a Hydra callback, in the launching process) starts the parent
  run when the sweep starts and writes `sweep.json` (the sweep's id, the parent's refs and
  the swept keys); when the sweep ends it writes the summary and closes the parent.
- the Optuna sweeper (`optuna_search`) writes `study.json`: its study's name and storage,
  the monitored metric, the pruner each trial builds.
- `trial.current()` (in each trial's process) reads `sweep.json` (and `study.json`): the
  trial's name, tags, params and parent; each trial returns its `Outcome` (status, metric,
  error) to the sweeper through Hydra and leaves it as `trial.json` (with its overrides,
  final metrics, steps, wall time) in its own folder: each file has one writer.
- `summary` reads every `trial.json` (and the trials' CSV files) into `trials.csv`, the
  best trial and `sweep_curves.png`.
"""
