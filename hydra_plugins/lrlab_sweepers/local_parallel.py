"""`hydra/launcher=local_parallel`: trials in fresh processes, `parallel` at a time.

submitit's local executor (through hydra-submitit-launcher) starts one process per trial,
so no TensorFlow state passes between trials; it starts every trial of a batch at once,
so this subclass hands it `parallel` trials at a time, whatever the sweeper's batch size.

A sweep stopped by Ctrl-C, SIGTERM or SIGHUP passes the stop on to its running trials and
waits for them to close their runs before the parent's summary is written. submitit leaves
them alone otherwise: `docker stop`, Slurm and systemd signal the sweep's own process, and
its trials trained on as orphans under a parent already closed KILLED, until the container's
SIGKILL left them RUNNING.
"""

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher

from trainer.tracking.process import stat_fields

log = logging.getLogger(__name__)
# A process that ended meanwhile is no error.
_gone_quietly = contextlib.suppress(ProcessLookupError, FileNotFoundError)


class LocalParallelLauncher(LocalLauncher):
    """submitit's local launcher, at most `parallel` trials at once; `stop_wait` seconds
    at most for the running trials to close when the sweep is stopped."""

    def __init__(self, parallel=2, stop_wait=120, **params):
        if not isinstance(parallel, int) or parallel < 1:
            raise ValueError(
                f"hydra.launcher.parallel must be a whole number >= 1. Received: {parallel!r}"
            )
        if not isinstance(stop_wait, int | float) or stop_wait < 0:
            raise ValueError(
                f"hydra.launcher.stop_wait must be a number of seconds >= 0. Received: "
                f"{stop_wait!r}"
            )
        super().__init__(**params)
        self.parallel = parallel
        self.stop_wait = stop_wait

    def launch(self, job_overrides, initial_job_idx):
        results = []
        for start in range(0, len(job_overrides), self.parallel):
            chunk = job_overrides[start : start + self.parallel]
            try:
                with _ctrl_c_kept_from_trials():
                    results += super().launch(chunk, initial_job_idx + start)
            except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM/SIGHUP (trainer.stopping)
                stop_trials(getattr(err, "signum", signal.SIGINT), self.stop_wait)
                raise
        return results


@contextlib.contextmanager
def _ctrl_c_kept_from_trials():
    """Start the trials with SIGINT blocked, so that a Ctrl-C at the terminal, which goes to
    every process of the foreground group, reaches this process alone, which stops them
    with SIGTERM (`stop_trials`). submitit's wrapper answers SIGINT with a traceback and
    kills its trial a second later, before it could close its run.

    A blocked signal mask is inherited by the processes started meanwhile; this thread's
    mask alone is changed, and a helper thread, started first, keeps SIGINT deliverable to
    this process, whose handler Python runs in the main thread as always."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    helper = threading.Event()
    threading.Thread(target=helper.wait, name="ctrl-c", daemon=True).start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        helper.set()


def stop_trials(signum, wait):
    """Send `signum` to this process's submitit trial processes (each forwards it to its
    trial, which stops after its step and closes its run KILLED), then wait up to `wait`
    seconds for them to end. SIGINT goes as SIGTERM: submitit's wrapper answers SIGINT by
    killing its task a second later, with no time to close the run."""
    trials = _trial_processes()
    if not trials:
        return
    for pid in trials:
        with _gone_quietly:
            os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)
    log.info(
        "stopping %d running trial(s); waiting up to %g s for their runs to close",
        len(trials),
        wait,
    )
    deadline = time.monotonic() + wait
    while (alive := [p for p in trials if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive:
        log.warning(
            "%d trial(s) still running after %g s (hydra.launcher.stop_wait); their "
            "runs close when they end, or `python -m trainer.tracking repair` closes "
            "them",
            len(alive),
            wait,
        )


def _trial_processes():
    """The pids of this process's children that are submitit's local job wrappers (Linux's
    /proc: submitit keeps its job handles to itself inside hydra-submitit-launcher)."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with _gone_quietly:
            fields = stat_fields(entry.name)
            if (
                fields
                and fields[1] == me
                and b"submitit.local._local" in (entry / "cmdline").read_bytes()
            ):
                found.append(int(entry.name))
    return found


def _alive(pid):
    """Running, not a zombie waiting for submitit to collect it."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"
