"""lrlab's learning-rate schedules: Keras `LearningRateSchedule`s, pure functions of the step.

Importing the package registers every class with Keras, so saved models reload with
their schedule. `python -m schedules` previews any `conf/schedule/*.yaml` without training.
"""

from schedules.base import Schedule
from schedules.build import build_schedule, from_config
from schedules.constant import Constant
from schedules.cosine import CosineDecay
from schedules.cyclical import SCALE_FUNCTIONS, CyclicalLR, register_scale_fn
from schedules.exponential import ExponentialDecay
from schedules.inverse_time import InverseTimeDecay
from schedules.one_cycle import OneCycle
from schedules.piecewise import PiecewiseConstant
from schedules.plateau import PlateauCallback, ReduceOnPlateau
from schedules.polynomial import PolynomialDecay
from schedules.range_test import RangeTest
from schedules.sequence import Sequence
from schedules.sgdr import SGDR
from schedules.step import StepDecay
from schedules.warmup import LinearWarmup

__all__ = [
    "SCALE_FUNCTIONS",
    "SGDR",
    "Constant",
    "CosineDecay",
    "CyclicalLR",
    "ExponentialDecay",
    "InverseTimeDecay",
    "LinearWarmup",
    "OneCycle",
    "PiecewiseConstant",
    "PlateauCallback",
    "PolynomialDecay",
    "RangeTest",
    "ReduceOnPlateau",
    "Schedule",
    "Sequence",
    "StepDecay",
    "build_schedule",
    "from_config",
    "register_scale_fn",
]
