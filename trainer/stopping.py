"""How a run stops before its end: it diverged (`TrainingDiverged`), or it was asked to:
Ctrl-C (SIGINT), and SIGTERM and SIGHUP, which `docker stop`, `timeout`, systemd, Slurm and
Kubernetes send (SIGTERM, then SIGKILL after a grace period) and a closed terminal sends
(SIGHUP).

Python's default SIGTERM and SIGHUP end the process at once, without `finally` blocks: the
run stayed RUNNING in MLflow with its last steps only in the spool. Here all three stop the
same way: `Stopped`, a `KeyboardInterrupt`, so that every place that closes a run on Ctrl-C
(the run KILLED, a sweep's parent KILLED) does so for the others too; during training,
`callbacks.StopOnInterrupt` turns them into a stop after the current step.
"""

from __future__ import annotations

import signal
import threading

# The signals that stop a run, and how the log names them.
NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


class Stopped(KeyboardInterrupt):
    """The process was asked to stop by signal `signum` (SIGINT: Ctrl-C)."""

    def __init__(self, signum=signal.SIGINT, note=""):
        super().__init__(NAMES.get(signum, str(signum)))
        self.signum = signum
        self.note = note  # where the stopped run was saved, for the console's last line

    @property
    def name(self):
        return NAMES.get(self.signum, str(self.signum))


def _raise(signum, frame):
    raise Stopped(signum)


def stop_on_signals():
    """SIGTERM and SIGHUP raise `Stopped` in the main thread, as Ctrl-C raises
    KeyboardInterrupt (call once, from the main thread, at start)."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _raise)


def exit_code(err):
    """128 + the signal's number, the shell's convention: 130 after Ctrl-C, 143 after
    SIGTERM, 129 after SIGHUP."""
    return 128 + int(getattr(err, "signum", signal.SIGINT))


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, or exploded; the run is marked FAILED with the step."""
