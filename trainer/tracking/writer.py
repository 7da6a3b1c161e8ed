"""The sinks run in a child process, so that training never waits on them.

A thread would share the training process's GIL: while it builds MLflow and TensorBoard
records, the training loop waits to start its next step (measured: 7 % of the MLP's
throughput). The child process has its own interpreter, runs on idle CPU time only,
imports neither TensorFlow nor Keras, and ignores Ctrl-C, so that the training process
can hand it the last rows and close it in order after an interrupt.

Memory stays bounded: the pipe to the child holds a few blocks of rows; a writer that
falls behind makes the next hand-over wait rather than grow.

Tracking errors never stop training: a failing sink is reported (once), switched off, and
with `strict=True` (the tests) the first error is raised again from `close()`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys

log = logging.getLogger(__name__)


class TrackingError(RuntimeError):
    """A sink failed in the writer process (raised from `close()` with strict=True)."""


class WriterProcess:
    """Feeds `(name, kwargs)` sinks (see `sinks.SINKS`) in a child `python -m` process.

    Messages are pickled over the child's stdin; its stdout carries the replies. The pipe
    holds at most a few blocks of rows, so a writer that falls behind makes the next
    hand-over wait (bounded memory); a child that dies shows up as a closed pipe.
    """

    def __init__(self, sinks, strict=False):
        self.strict = strict
        self.errors = []
        self._process = subprocess.Popen(
            [sys.executable, "-m", "trainer.tracking.writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._send(("start", (sinks,)))
        self._closed = False

    def steps(self, rows):
        if len(rows):
            self._send(("steps", (rows,)))

    def scalars(self, values, step):
        self._send(("scalars", ({k: float(v) for k, v in values.items()}, step)))

    def flush(self):
        """Block until everything sent so far is written and flushed."""
        if self._send(("flush", ())):
            self._wait_for("flushed")

    def close(self):
        """Write everything sent, close the sinks and the process; report sink errors."""
        if self._closed:
            return
        self._closed = True
        if self._send(("close", ())):
            self._wait_for("closed")
        self._process.stdin.close()
        self._process.wait()
        if self.strict and self.errors:
            raise TrackingError("; ".join(self.errors))

    def _send(self, message):
        try:
            pickle.dump(message, self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._process.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError) as err:
            self._report(
                f"the tracking process is gone (exit code {self._process.poll()}); "
                f"{message[0]} dropped: {err}"
            )
            return False

    def _wait_for(self, kind):
        while True:
            try:
                reply, detail = pickle.load(self._process.stdout)
            except (EOFError, OSError, pickle.UnpicklingError) as err:
                self._report(
                    f"the tracking process ended before {kind!r} "
                    f"(exit code {self._process.poll()}): {err}"
                )
                return
            if reply == "error":
                self._report(detail)
            elif reply == kind:
                return

    def _report(self, message):
        log.error("tracking: %s", message)
        self.errors.append(message)


def serve(requests, replies):
    """The child process: build the sinks, then apply requests until "close"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _yield_cpu()
    from trainer.tracking.sinks import SINKS

    def reply(*message):
        pickle.dump(message, replies)
        replies.flush()

    sinks = []
    while True:
        try:
            kind, args = pickle.load(requests)
        except EOFError:  # the parent is gone: write what we have
            kind, args = "close", ()
        if kind == "start":
            for name, kwargs in args[0]:
                try:
                    sinks.append(SINKS[name](**kwargs))
                except Exception as err:
                    reply("error", f"{name} sink could not start: {type(err).__name__}: {err}")
        elif kind in ("flush", "close"):
            _each(sinks, reply, "flush")
            if kind == "flush":
                reply("flushed", None)
                continue
            _each(sinks, reply, "close")
            reply("closed", None)
            return
        else:
            _each(sinks, reply, kind, *args)


def _yield_cpu():
    """Run only on CPU time that training leaves idle (Linux SCHED_IDLE), else at nice 19.

    Should the writer fall behind, the pipe fills and the training loop waits for it
    (see StepRecorder.on_train_batch_begin), so no row is ever dropped.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)


def _each(sinks, reply, method, *args):
    for sink in list(sinks):
        try:
            getattr(sink, method)(*args)
        except Exception as err:  # a tracking failure must not kill training
            sinks.remove(sink)
            reply(
                "error",
                f"{type(sink).__name__}.{method} failed and is switched off for "
                f"this run: {type(err).__name__}: {err}",
            )


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
