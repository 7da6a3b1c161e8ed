"""One backoff policy for every call that may succeed if made again: a tracking store away or
busy (the MLflow sink's spool), a SQLite file another process holds locked, a database that
another machine is creating at that moment (a shared Optuna study). Each waits `first`
seconds after its first failure, then twice as long each time, at most `longest`."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Waits between tries: `first` seconds, doubling, at most `longest`."""

    first: float
    longest: float

    def after(self, delay):
        """The wait that follows one of `delay` seconds (0: the first failure)."""
        return min(max(2 * delay, self.first), self.longest)


def retried(call, retryable, backoff, patience=None, attempts=None, on_retry=None):
    """`call()`, made again while it raises an error that `retryable(err)` accepts, waiting as
    `backoff` says, until it returns, or `patience` seconds were waited, or `attempts` tries
    were made; then the last error stands. `on_retry(err, wait)` is told of each retry."""
    waited, tries, delay = 0.0, 0, 0.0
    while True:
        tries += 1
        try:
            return call()
        except Exception as err:
            spent = (attempts is not None and tries >= attempts) or (
                patience is not None and waited >= patience
            )
            if spent or not retryable(err):
                raise
            delay = backoff.after(delay)
            if on_retry is not None:
                on_retry(err, delay)
            time.sleep(delay)
            waited += delay
