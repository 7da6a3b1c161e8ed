"""The sinks run in a child process, so that training never waits on them.

A thread would share the training process's GIL: while it builds MLflow and TensorBoard
records, the training loop waits to start its next step (measured: 7 % of the MLP's
throughput). The child process has its own interpreter, imports neither TensorFlow nor
Keras, and ignores Ctrl-C, so that the training process can hand it the last rows and
close it in order after an interrupt. Its main thread (reading the pipe, TensorBoard,
the CSV, the spool) runs at normal priority, so the pipe never waits on a busy machine;
the MLflow upload, its costly part, yields to training with a bounded delay
(`spool.Shipper`).

Memory stays bounded: the pipe to the child holds a few blocks of rows; a writer that
falls behind makes the next hand-over wait rather than grow.

Tracking errors never stop training: a failing sink is reported (once), switched off, and
with `strict=True` (the tests) the first error is raised again from `close()`. A sink that
cannot start is an input error (`ConfigError`) before training begins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading

from trainer.config.errors import ConfigError

log = logging.getLogger(__name__)


class TrackingError(RuntimeError):
    """A sink failed in the writer process (raised from `close()` with strict=True)."""


class WriterProcess:
    """Drives `sinks` (`{name: Sink}`, see `sinks.base`) in a child `python -m` process.

    Every method of the sink protocol is here, each a message to the child: pickled over
    its stdin, with replies on its stdout. `start` and `flush` wait for the child; the rest
    return at once. A child that dies shows up as a closed pipe, reported once.
    """

    def __init__(self, sinks, strict=False):
        self.strict = strict
        self.errors = []
        self._closed = False
        self._process = subprocess.Popen(
            [sys.executable, "-m", "trainer.tracking.writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._send(("sinks", (dict(sinks),)))

    def start(self, run):
        """Start every sink for `run` (a `RunInfo`); returns {name: Started}.

        Raises ConfigError naming the sink when one cannot start; the others are closed
        as FAILED and the child ends.
        """
        if not self._send(("start", (run,))):
            raise ConfigError("the tracking process could not start", fix=self._fix())
        reply, detail = self._next_reply()
        if reply == "started":
            return detail
        self._closed = True
        self._process.stdin.close()
        self._process.wait()
        if reply == "start_failed":
            name, message, fix = detail
            raise ConfigError(
                f"sink.{name} could not start: {message}",
                fix=fix or f"fix its settings (sink.{name}.*), or leave it out: {self._fix(name)}",
            )
        raise ConfigError(f"the tracking process ended before starting: {detail}")

    def params(self, values):
        self._send(("params", (dict(values),)))

    def tags(self, values):
        self._send(("tags", ({k: str(v) for k, v in values.items()},)))

    def steps(self, rows):
        if len(rows):
            self._send(("steps", (rows,)))

    def scalars(self, values, step):
        self._send(("scalars", ({k: float(v) for k, v in values.items()}, int(step))))

    def artifacts(self, paths, folder=None):
        self._send(("artifacts", ([str(p) for p in paths], folder)))

    def model(self, name, file, mlflow_dir=None, step=0):
        self._send(("model", (name, str(file), mlflow_dir and str(mlflow_dir), int(step))))

    def flush(self):
        """Block until everything sent so far is written and flushed."""
        if self._send(("flush", ())):
            self._wait_for("flushed")

    def close(self, status="FINISHED"):
        """Write everything sent, close the sinks with `status` and end the process; report
        sink errors (and raise the first with strict=True)."""
        if self._closed:
            return
        self._closed = True
        if self._send(("close", (status,))):
            self._wait_for("closed")
        self._process.stdin.close()
        self._process.wait()
        if self.strict and self.errors:
            raise TrackingError("; ".join(self.errors))

    def kill(self):
        """End the child at once, for a caller that gave up waiting on it: what it has not
        written is lost, and its run stays open until `python -m trainer.tracking repair`."""
        self._closed = True
        self._process.kill()
        self._process.wait()

    def _fix(self, name=None):
        return "choose the sinks with sink=[...], e.g. sink=[csv]" if name else "see the log above"

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

    def _next_reply(self):
        """The next reply that is not a sink error (those are reported on the way)."""
        while True:
            try:
                reply, detail = pickle.load(self._process.stdout)
            except (EOFError, OSError, pickle.UnpicklingError) as err:
                return "gone", f"exit code {self._process.poll()}: {err}"
            if reply == "warning":  # values kept for later (a store away at the end)
                log.warning("tracking: %s", detail)
                continue
            if reply != "error":
                return reply, detail
            self._report(detail)

    def _wait_for(self, kind):
        reply, detail = self._next_reply()
        if reply == "gone":
            self._report(f"the tracking process ended before {kind!r} ({detail})")

    def _report(self, message):
        log.error("tracking: %s", message)
        self.errors.append(message)


# How often a started run says it is alive (`lrlab.heartbeat`); the tests shorten it.
HEARTBEAT_S = float(os.environ.get("LRLAB_HEARTBEAT_S", "60"))


def serve(requests, replies):
    """The child process: receive the sinks, start them, then apply requests until "close".

    Once the sinks have started, a thread calls their `heartbeat()` every `HEARTBEAT_S`
    seconds, whatever training is doing, so that `python -m trainer.tracking repair` can
    tell a run that stopped without closing (its processes killed) from a slow one.
    """
    # The parent decides when to stop: a Ctrl-C, or a SIGTERM or SIGHUP sent to the whole
    # process group (`docker stop`, `timeout`), reaches this process too, and the parent
    # then sends what it still has and closes the run. If the parent is gone, its pipe ends.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    busy = threading.Lock()  # one call into the sinks (and one reply) at a time
    gone = threading.Event()  # the parent stopped reading: replies go nowhere

    def reply(*message):
        if gone.is_set():
            return
        try:
            pickle.dump(message, replies)
            replies.flush()
        except (BrokenPipeError, ValueError, OSError):
            gone.set()  # killed parent: the run is still closed, quietly

    sinks = {}
    stop = threading.Event()
    while True:
        try:
            kind, args = pickle.load(requests)
        except (EOFError, pickle.UnpicklingError):  # the parent is gone: write what we have
            kind, args = "close", ("KILLED",)
        with busy:
            if kind == "sinks":
                sinks = args[0]
            elif kind == "start":
                started = _start(sinks, args[0], reply)
                if started is None:
                    return
                reply("started", started)
                threading.Thread(
                    target=_heartbeat, args=(sinks, reply, busy, stop), daemon=True
                ).start()
            elif kind in ("flush", "close"):
                _each(sinks, reply, "flush")
                if kind == "flush":
                    reply("flushed", None)
                    continue
                stop.set()
                _each(sinks, reply, "close", *args)
                reply("closed", None)
                return
            else:
                _each(sinks, reply, kind, *args)


def _heartbeat(sinks, reply, busy, stop):
    while not stop.wait(HEARTBEAT_S):
        with busy:
            if not stop.is_set():
                _each(sinks, reply, "heartbeat")


def _start(sinks, run, reply):
    """Start the sinks in order; on a failure close those started as FAILED and say so."""
    started = {}
    for name, sink in sinks.items():
        try:
            started[name] = sink.start(run)
        except Exception as err:
            for earlier in started:
                with contextlib.suppress(Exception):
                    sinks[earlier].close("FAILED")
            if isinstance(err, ConfigError):
                reply("start_failed", (name, err.message, err.fix))
            else:
                reply("start_failed", (name, f"{type(err).__name__}: {err}", None))
            return None
    return started


def _each(sinks, reply, method, *args):
    for name, sink in list(sinks.items()):
        try:
            note = getattr(sink, method)(*args)
            if method == "close" and note:
                reply("warning", f"sink.{name}: {note}")
        except Exception as err:  # a tracking failure must not kill training
            del sinks[name]
            reply(
                "error",
                f"sink.{name} ({type(sink).__name__}.{method}) failed and is switched off "
                f"for this run: {type(err).__name__}: {err}",
            )


if __name__ == "__main__":
    # Replies go out on the original stdout; whatever a library prints lands on stderr instead
    # of in the middle of a reply (MLflow prints "View run ... at: URL" with an emoji when it
    # ends a run on a server, which broke the closing reply).
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
    )
    serve(sys.stdin.buffer, replies)
    with contextlib.suppress(OSError, ValueError):  # a parent gone takes the pipe with it
        replies.close()
