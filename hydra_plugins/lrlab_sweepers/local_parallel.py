"""`hydra/launcher=local_parallel`: trials in fresh processes, `parallel` at a time.

submitit's local executor (through hydra-submitit-launcher) starts one process per trial,
so no TensorFlow state passes between trials; it starts every trial of a batch at once,
so this subclass hands it `parallel` trials at a time, whatever the sweeper's batch size.
"""

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher


class LocalParallelLauncher(LocalLauncher):
    """submitit's local launcher, at most `parallel` trials at once."""

    def __init__(self, parallel=2, **params):
        if not isinstance(parallel, int) or parallel < 1:
            raise ValueError(
                f"hydra.launcher.parallel must be a whole number >= 1. Received: {parallel!r}"
            )
        super().__init__(**params)
        self.parallel = parallel

    def launch(self, job_overrides, initial_job_idx):
        results = []
        for start in range(0, len(job_overrides), self.parallel):
            chunk = job_overrides[start : start + self.parallel]
            results += super().launch(chunk, initial_job_idx + start)
        return results
