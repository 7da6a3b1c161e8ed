"""lrlab's learning-rate schedules: Keras `LearningRateSchedule`s, pure functions of the step.

The classes load on first use (`from schedules import SGDR`, `schedules.CosineDecay`), so
that `python -m schedules --help` and config errors answer without importing TensorFlow.
Loading them registers every class with Keras, so saved models reload with their
schedule; when Keras is already imported, `import schedules` loads them at once.
`python -m schedules` previews any `conf/schedule/*.yaml` without training (the app itself
is `trainer.config.preview_app`: this package holds the schedule library and imports only
Keras and NumPy).
"""

import importlib
import pkgutil
import sys

# Public name -> the module that defines it.
_EXPORTS = {
    "Schedule": "base",
    "Constant": "constant",
    "CosineDecay": "cosine",
    "SCALE_FUNCTIONS": "cyclical",
    "CyclicalLR": "cyclical",
    "register_scale_fn": "cyclical",
    "ExponentialDecay": "exponential",
    "InverseSqrt": "inverse_sqrt",
    "InverseTimeDecay": "inverse_time",
    "OneCycle": "one_cycle",
    "PiecewiseConstant": "piecewise",
    "ReduceOnPlateau": "plateau",
    "Rex": "rex",
    "PolynomialDecay": "polynomial",
    "RangeTest": "range_test",
    "Sequence": "sequence",
    "Scaled": "scaled",
    "SGDR": "sgdr",
    "StepDecay": "step",
    "LinearWarmup": "warmup",
    "WarmupStableDecay": "wsd",
}
__all__ = sorted(_EXPORTS)


def load_all():
    """Import every module of the package (registering each schedule class with Keras).

    Found on disk, so a new family file is registered without being listed anywhere.
    """
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"schedules.{module.name}")


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'schedules' has no attribute {name!r}")
    load_all()
    value = getattr(importlib.import_module(f"schedules.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])


if "keras" in sys.modules:
    load_all()
