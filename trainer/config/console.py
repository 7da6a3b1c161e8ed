"""What the two command-line apps share at the console: a quiet TensorFlow import, and bad
input reported in a few lines instead of a traceback.

TensorFlow's C++ runtime prints its start-up notices (oneDNN, CUDA stubs, CPU features,
`cuInit` on a machine without a GPU) straight to file descriptor 2 while it loads, before
`TF_CPP_MIN_LOG_LEVEL` takes effect, so the variable alone cannot hide them. The import
runs with descriptor 2 captured; the capture is shown when the import fails, and nothing
is captured when the user sets `LRLAB_TF_LOGS=1` (or `TF_CPP_MIN_LOG_LEVEL` themselves).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from trainer.config.errors import ConfigError

# Whether the user asked for TensorFlow's native notices, read before anything imports Keras.
_WANTS_TF_LOGS = bool(os.environ.get("LRLAB_TF_LOGS")) or "TF_CPP_MIN_LOG_LEVEL" in os.environ


def import_tensorflow():
    """Import TensorFlow and Keras once, without their native start-up notices."""
    if "keras" in sys.modules:
        return
    with native_notices_hidden() as hidden:
        if hidden:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the device probe prints here, not mid-training
        import keras  # noqa: F401


@contextlib.contextmanager
def native_notices_hidden():
    """Whatever runs inside may import TensorFlow: its native start-up notices are captured
    (and shown if the import fails), unless TensorFlow is already loaded or the user asked
    for them (`LRLAB_TF_LOGS=1`, or a `TF_CPP_MIN_LOG_LEVEL` of their own). Yields whether
    it hides them."""
    if "tensorflow" in sys.modules or _WANTS_TF_LOGS:
        yield False
        return
    # Level 3 keeps later native errors (the `cuInit` probe at the first op) quiet too.
    # (Keras on JAX sets level 1 when it loads: the user's wish is read at import, above.)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with _native_stderr_captured():
        yield True


@contextlib.contextmanager
def _native_stderr_captured():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def input_errors_reported(app):
    """Turn a `ConfigError` into a few lines on stderr and exit status 2.

    `HYDRA_FULL_ERROR=1` lets the exception (and its traceback) through, as Hydra does.
    """
    try:
        yield
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.stdout.flush()
        sys.stderr.write(f"{app}: error: {err}\n")
        sys.exit(2)


@contextlib.contextmanager
def no_folder_left_if_refused(folder):
    """A command refused for its input leaves no run folder behind: Hydra made one before
    the input was checked, holding only its own `.hydra/` and the log."""
    try:
        yield
    except ConfigError:
        folder = Path(folder)
        if folder.is_dir() and all(
            p.name == ".hydra" or p.suffix == ".log" for p in folder.iterdir()
        ):
            shutil.rmtree(folder, ignore_errors=True)
            if _is_empty_day_folder(folder.parent):
                with contextlib.suppress(OSError):
                    folder.parent.rmdir()
        raise


def _is_empty_day_folder(folder):
    """Whether `folder` is the day's folder of Hydra's default layout (`outputs/2026-12-07`)
    with nothing left in it. A run folder given as `hydra.run.dir=run` has the working folder
    as its parent, which is never removed, even when empty."""
    cwd = Path.cwd().resolve()
    folder = folder.resolve()
    return (
        re.fullmatch(r"\d{4}-\d{2}-\d{2}", folder.name) is not None
        and folder != cwd
        and folder not in cwd.parents
        and not any(folder.iterdir())
    )
