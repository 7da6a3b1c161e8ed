"""The trial's side of an Optuna sweep: the study's storage, the running Optuna trial of a
Hydra job, and Optuna's pruning callback. The sweeper (`optuna_search`) asks and tells; each
trial, in whatever process the launcher gives it, reports its epochs here."""

from __future__ import annotations

import logging

from hydra.utils import instantiate

log = logging.getLogger(__name__)
JOB_ATTR = "lrlab.job"  # the Hydra job number of a trial, within its sweep
SWEEP_ATTR = "lrlab.sweep.id"


def open_storage(url_or_path):
    """The storage a trial (or the summary) opens from `sweep.json`'s `storage`."""
    if "://" in url_or_path:
        return url_or_path
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(url_or_path))


def trial_for_job(info, sweep_id, job):
    """The running Optuna trial of Hydra job `job` in the study `info` (sweep.json's
    "optuna"), as an `optuna.trial.Trial` it can report to."""
    import optuna
    from optuna.trial import TrialState

    pruner = instantiate(info["pruner"]) if info.get("pruner") else optuna.pruners.NopPruner()
    study = optuna.load_study(
        study_name=info["study"], storage=open_storage(info["storage"]), pruner=pruner
    )
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = frozen.user_attrs
        if attrs.get(JOB_ATTR) == job and attrs.get(SWEEP_ATTR) == sweep_id:
            # Optuna has no public way to get a reportable Trial of a running trial in
            # another process: a FrozenTrial's `report` does nothing, and `Trial(study,
            # trial_id)` needs the storage's id, which only `_trial_id` holds
            # (optuna/optuna#2987, closed as stale; #5647).
            return optuna.trial.Trial(study, frozen._trial_id)
    raise RuntimeError(f"no running Optuna trial for job {job} in study {info['study']!r}")


def pruning_callback(optuna_trial, monitor, ending):
    """Optuna's `KerasPruningCallback`; a pruned trial's `ending` (`trainer.tracking.run.
    Ending`) says how its run ends: KILLED (it did not run its course), tagged as pruned."""
    import optuna
    from optuna_integration.keras import KerasPruningCallback

    from trainer.tracking import metadata

    class Pruning(KerasPruningCallback):
        def on_epoch_end(self, epoch, logs=None):
            try:
                super().on_epoch_end(epoch, logs)
            except optuna.TrialPruned:
                ending.forced_status = "KILLED"
                ending.tags = {
                    "lrlab.pruned": "true",
                    "lrlab.pruned_at_epoch": str(epoch),
                    **metadata.pruned_note(epoch, monitor, (logs or {}).get(monitor)),
                }
                log.info("Optuna pruned this trial after epoch %d (%s)", epoch, monitor)
                raise

    return Pruning(optuna_trial, monitor)
