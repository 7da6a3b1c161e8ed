"""Which Keras backend a run trains on, chosen from `backend=` before Keras is imported.

Keras reads `KERAS_BACKEND` once, at its first import, so the choice is made here, before
anything imports Keras, and a process cannot change it later (a sweep that varies `backend`
needs a launcher that starts a process per trial). `backend=auto` takes the backend that
`bench/throughput.py --backend ...` measured fastest for the model on a CPU (`FASTEST`),
or the first installed one of `tensorflow, jax, torch` where that one is missing.

Also here, what differs between backends outside the model: how many CPU threads a run's
ops may use, `sync` (JAX keeps the training state outside the Keras variables during an
epoch; a callback that reads a variable mid-epoch must put it back first), and the largest
crossentropy Keras reports (`crossentropy_ceiling`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass

# Imported before Keras is: it reads whether the user asked for TensorFlow's native notices.
from trainer.config.console import import_tensorflow, native_notices_hidden
from trainer.config.errors import ConfigError

log = logging.getLogger(__name__)

NAMES = ("tensorflow", "jax", "torch")
SHOWN = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
# The backend `auto` picks per model (`_target_` of conf/model/), from the per-backend table
# of docs/performance.md (bench/results/backends/, 2-core CPU): lrlab's own MLP trains several
# times faster on JAX, its CNN several times faster on TensorFlow (oneDNN against XLA's CPU
# convolutions).
FASTEST = {"trainer.models.mlp": "jax", "trainer.models.cnn": "tensorflow"}
# What to install for each: the package and the project's extra.
INSTALL = {
    "tensorflow": 'pip install -e "."',
    "jax": 'pip install -e ".[jax]"',
    "torch": 'pip install -e ".[torch]"',
}


@dataclass(frozen=True)
class Backend:
    """The backend a run uses, and why (for the log and the run's `lrlab.backend_reason`)."""

    name: str
    reason: str


def installed(name):
    return importlib.util.find_spec(name) is not None


def choose(requested, model_target=None):
    """The `Backend` for `backend=<requested>` and the model's `_target_`; a ConfigError
    names what to install when the requested one is missing."""
    requested = str(requested)
    if requested == "auto":
        best = FASTEST.get(model_target, "tensorflow")
        if installed(best):
            return Backend(best, f"auto: the fastest measured for {model_target}")
        fallback = next((n for n in NAMES if installed(n)), None)
        if fallback is None:
            raise ConfigError(
                "backend=auto: none of TensorFlow, JAX or PyTorch is installed",
                fix=f"install one: {INSTALL['tensorflow']} (or .[jax], .[torch])",
            )
        return Backend(fallback, f"auto: {best} (fastest for {model_target}) is not installed")
    if requested not in NAMES:
        raise ConfigError(
            f"backend must be one of tensorflow, jax, torch or auto. Received: "
            f"backend={requested!r}",
            fix="set backend=tensorflow (or jax, torch, auto), or KERAS_BACKEND",
        )
    if not installed(requested):
        raise ConfigError(
            f"backend={requested}: {requested} is not installed in this environment",
            fix=f"install it ({INSTALL[requested]}) or choose another backend=",
        )
    return Backend(requested, "backend=" + requested)


def start(backend, threads=None, gpu_share=None):
    """Make `backend` Keras' backend, limit its CPU threads to `threads` (None: no limit),
    its GPU memory to `gpu_share` of a GPU (a Ray trial's fractional `num_gpus`; None: the
    backend's default) and import Keras (TensorFlow without its native start-up notices)."""
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend.name:
            raise ConfigError(
                f"backend={backend.name}, but this process already runs Keras on "
                f"{keras.backend.backend()} (Keras picks its backend once per process)",
                fix="sweep over backend= with a launcher that starts a process per trial "
                "(hydra/launcher=local_parallel, submitit_local or ray), or run one "
                "backend per command",
            )
        return  # started by an earlier run (or trial) of this process, threads and all
    os.environ["KERAS_BACKEND"] = backend.name
    os.environ.update(gpu_memory_env(backend.name, gpu_share, os.environ))
    _limit_threads(backend.name, threads)
    if backend.name == "tensorflow":
        import_tensorflow()
    else:
        # JAX logs at INFO each accelerator it looks for and does not find (TPU, CUDA).
        logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
        import keras
    log.info("Keras backend: %s (%s)", backend.name, backend.reason)


def gpu_memory_env(name, share, environ):
    """The variables that keep a trial given `share` of a GPU (0 < share < 1) within that
    share of its memory: JAX takes 75 % of a GPU at its start, so a second trial on the same
    GPU would fail. 90 % of the share (XLA's own bookkeeping needs the rest); nothing where
    the user set the fraction, or for a whole GPU or none."""
    if name != "jax" or not share or not 0 < float(share) < 1:
        return {}
    if "XLA_PYTHON_CLIENT_MEM_FRACTION" in environ:
        return {}
    return {"XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 * float(share):.3f}"}


def _limit_threads(name, threads):
    """At most `threads` CPU threads per op, one op at a time, so that N trials of one thread
    each keep N cores busy without oversubscribing them."""
    if not threads:
        return
    threads = int(threads)
    if name == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as err:  # already running ops (a second run in this process)
            log.warning("could not limit TensorFlow's threads: %s", err)
            return
    elif name == "jax":
        # XLA's CPU client reads its flags when JAX starts; it has no per-op thread count,
        # only one Eigen pool, on or off.
        if threads == 1:
            flags = os.environ.get("XLA_FLAGS", "")
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            ).strip()
        else:
            log.info("JAX: %d threads asked; XLA's CPU client uses all cores or one", threads)
            return
    elif name == "torch":
        import torch

        torch.set_num_threads(threads)
        # Set once per process: a second run in it keeps the first value.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    log.info("%s: %d thread(s) per op", SHOWN[name], threads)


def seed(value):
    """`keras.utils.set_random_seed(value)`: Python's, NumPy's and Keras' generators (the
    model's first weights, the dropout). Keras seeds TensorFlow's too wherever TensorFlow is
    installed, importing it on any backend: its native start-up notices are kept off the
    console here, as on TensorFlow."""
    import keras

    with native_notices_hidden():
        keras.utils.set_random_seed(value)


def sync(model):
    """Put the training state back into `model`'s variables, where the backend keeps it
    elsewhere during `fit` (JAX). Call it on the training thread, between steps (a batch-begin
    or epoch-end hook), before reading a variable; a no-op on TensorFlow and PyTorch."""
    state_sync = getattr(model, "jax_state_sync", None)
    if state_sync is not None:
        state_sync()


def crossentropy_ceiling():
    """The largest per-example crossentropy Keras reports for a softmax output on the
    running backend: None on TensorFlow, which computes it from the softmax's logits
    (unbounded); -log(epsilon) on JAX and PyTorch, which clip the probabilities to
    [epsilon, 1 - epsilon] (16.12 for Keras' epsilon 1e-7). A diverged classifier's loss
    therefore sits near 16 there, where TensorFlow's grows without bound or turns NaN.
    """
    import math

    import keras

    if keras.backend.backend() == "tensorflow":
        return None
    return -math.log(keras.config.epsilon())
