"""A background thread that hands tracked values to the sinks, so training never waits on them.

Tracking errors never stop training: they are logged (once per sink), the sink is dropped,
and with `strict=True` (tests) the first one is raised again from `close()`.
"""

from __future__ import annotations

import logging
import queue
import threading

log = logging.getLogger(__name__)


class BackgroundWriter:
    def __init__(self, sinks, strict=False):
        self.sinks = list(sinks)
        self.strict = strict
        self.error = None
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="lrlab-tracking", daemon=True)
        self._thread.start()

    def steps(self, rows):
        if len(rows):
            self._queue.put(("steps", (rows,)))

    def scalars(self, values, step):
        self._queue.put(("scalars", (dict(values), step)))

    def flush(self):
        """Block until everything queued so far is written and flushed."""
        done = threading.Event()
        self._queue.put(("flush", done))
        done.wait()

    def close(self):
        """Write everything queued, close the sinks, and stop the thread."""
        self._queue.put(("close", None))
        self._thread.join()
        if self.strict and self.error is not None:
            raise self.error

    def _work(self):
        while True:
            kind, payload = self._queue.get()
            if kind == "flush":
                self._each("flush")
                payload.set()
            elif kind == "close":
                self._each("flush")
                self._each("close")
                return
            else:
                self._each(kind, *payload)

    def _each(self, method, *args):
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception as err:  # a tracking failure must not kill training
                log.error(
                    "tracking: %s.%s failed and is switched off for this run: %s: %s",
                    type(sink).__name__,
                    method,
                    type(err).__name__,
                    err,
                )
                self.sinks.remove(sink)
                self.error = self.error or err
