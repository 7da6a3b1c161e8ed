"""Optuna samplers for studies that several processes share."""

from __future__ import annotations

import optuna


class SeedPerTrial(optuna.samplers.BaseSampler):
    """The configured sampler, made anew for each trial with the seed `seed + trial number`.

    Optuna numbers a study's trials across every process working on it. Seeded once per
    process, as samplers are, two machines joining one study with the same seed proposed
    the same trials (4 trials, 2 configurations); seeded per trial, each trial draws from
    a stream of its own, and a study run by one process is still the same from its seed.
    TPE and the random sampler keep nothing between trials but their generator (the
    history is read from the study), so a fresh one per trial loses nothing. Built on
    `optuna.samplers.BaseSampler`'s public interface; Optuna has no per-trial seeding.
    """

    def __init__(self, make, seed):
        self._make, self.seed = make, seed
        self._samplers = {}  # trial number -> its sampler, while it runs

    def _of(self, trial):
        if trial.number not in self._samplers:
            self._samplers[trial.number] = self._make(self.seed + trial.number)
        return self._samplers[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self._of(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        self._of(trial).after_trial(study, trial, state, values)
        self._samplers.pop(trial.number, None)

    def reseed_rng(self):
        """Optuna calls this for `n_jobs > 1` in `optimize`; the seeds are per trial here."""

    def __repr__(self):
        return f"SeedPerTrial({self._make(self.seed)!r}, seed={self.seed} + trial number)"
