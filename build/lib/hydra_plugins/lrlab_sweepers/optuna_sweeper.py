"""`hydra/sweeper=lrlab_optuna`: Optuna search with pruning (see trainer.sweeps.optuna_search)."""

from trainer.sweeps.optuna_search import OptunaSearch


class LrlabOptunaSweeper(OptunaSearch):
    """The Hydra plugin: named here, where Hydra's plugin scan finds it."""
