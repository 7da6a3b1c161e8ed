"""Every invalid argument fails at construction, naming the key, the rule and the value."""

import pytest

import schedules as S
from schedules.plateau import ReduceOnPlateau

GOOD = {
    S.Constant: dict(lr=0.1),
    S.ExponentialDecay: dict(initial_lr=0.1, decay_steps=10, decay_rate=0.5),
    S.StepDecay: dict(initial_lr=0.1, decay_rate=0.5, step_size=10),
    S.PiecewiseConstant: dict(boundaries=[10, 20], values=[0.1, 0.01, 0.001]),
    S.PolynomialDecay: dict(initial_lr=0.1, decay_steps=10, end_lr=0.0),
    S.InverseTimeDecay: dict(initial_lr=0.1, decay_steps=10, decay_rate=0.5),
    S.CosineDecay: dict(initial_lr=0.1, decay_steps=10),
    S.SGDR: dict(initial_lr=0.1, first_cycle_steps=10),
    S.CyclicalLR: dict(base_lr=0.01, max_lr=0.1, step_size=10),
    S.OneCycle: dict(max_lr=0.1, total_steps=100),
    S.RangeTest: dict(min_lr=1e-7, max_lr=10.0, num_steps=100),
    S.WarmupStableDecay: dict(initial_lr=0.1, stable_steps=80, decay_steps=20),
    S.Rex: dict(initial_lr=0.1, decay_steps=100),
    S.InverseSqrt: dict(initial_lr=0.1, timescale=100),
}

BAD = [
    (S.WarmupStableDecay, "decay_shape", "sqrt", "one of ['1-sqrt', 'cosine', 'linear']"),
    (S.WarmupStableDecay, "stable_steps", -1, ">= 0"),
    (S.WarmupStableDecay, "decay_steps", "20", "a finite number"),
    (S.WarmupStableDecay, "min_lr", 0.2, "<= initial_lr"),
    (S.WarmupStableDecay, "warmup_steps", -5, ">= 0"),
    (S.Rex, "decay_steps", 0, "> 0"),
    (S.Rex, "beta", 1.0, "in [0, 1)"),
    (S.Rex, "beta", -0.1, "in [0, 1)"),
    (S.Rex, "min_lr", 0.5, "<= initial_lr"),
    (S.InverseSqrt, "timescale", 0, "> 0"),
    (S.InverseSqrt, "initial_lr", 0, "> 0"),
    (S.InverseSqrt, "warmup_start_lr", -0.1, ">= 0"),
    (S.Constant, "lr", 0, "> 0"),
    (S.Constant, "lr", "0.1", "a finite number"),
    (S.Constant, "lr", float("nan"), "a finite number"),
    (S.ExponentialDecay, "decay_steps", 0, "> 0"),
    (S.ExponentialDecay, "decay_rate", 1.5, "in (0, 1]"),
    (S.ExponentialDecay, "decay_rate", 0.0, "in (0, 1]"),
    (S.ExponentialDecay, "initial_lr", -1.0, "> 0"),
    (S.ExponentialDecay, "min_lr", -0.1, ">= 0"),
    (S.ExponentialDecay, "staircase", "yes", "true or false"),
    (S.StepDecay, "step_size", -3, "> 0"),
    (S.StepDecay, "decay_rate", 2.0, "in (0, 1]"),
    (S.PiecewiseConstant, "boundaries", [20, 10], "strictly increasing"),
    (S.PiecewiseConstant, "values", [0.1, 0.01], "a list of 3 rates"),
    (S.PiecewiseConstant, "values", [0.1, -0.01, 0.001], ">= 0"),
    (S.PolynomialDecay, "decay_steps", 0, "> 0"),
    (S.PolynomialDecay, "power", 0, "> 0"),
    (S.InverseTimeDecay, "decay_rate", 0, "> 0"),
    (S.CosineDecay, "decay_steps", 0, "> 0"),
    (S.CosineDecay, "min_lr", 0.5, "<= initial_lr"),
    (S.CosineDecay, "warmup_steps", -1, ">= 0"),
    (S.SGDR, "first_cycle_steps", 0, "> 0"),
    (S.SGDR, "t_mult", 0.5, ">= 1"),
    (S.SGDR, "m_mul", 1.5, "in (0, 1]"),
    (S.SGDR, "reduction_steps", [100, 50], "strictly increasing"),
    (S.SGDR, "reduction_factor", 0, "> 0"),
    (S.CyclicalLR, "max_lr", 0.001, ">= base_lr"),
    (S.CyclicalLR, "step_size", 0, "> 0"),
    (S.CyclicalLR, "mode", "triangle", "one of"),
    (S.CyclicalLR, "scale_fn", "cosine", "one of ['sine']"),
    (S.CyclicalLR, "scale_mode", "epoch", "one of"),
    (S.CyclicalLR, "gamma", 1.01, "in (0, 1]"),
    (S.OneCycle, "pct_start", 1.0, "in (0, 1)"),
    (S.OneCycle, "pct_start", 0, "in (0, 1)"),
    (S.OneCycle, "anneal_strategy", "cosine", "one of ['cos', 'linear']"),
    (S.OneCycle, "total_steps", 0, "> 0"),
    (S.OneCycle, "total_steps", 2, "long enough"),
    (S.OneCycle, "div_factor", 0, "> 0"),
    (S.OneCycle, "final_div_factor", -1, "> 0"),
    (S.RangeTest, "max_lr", 1e-8, "> min_lr"),
    (S.RangeTest, "num_steps", 1, ">= 2"),
    (S.RangeTest, "sweep", "log", "one of ['exponential', 'linear']"),
]


@pytest.mark.parametrize(
    "cls,key,value,rule", BAD, ids=[f"{c.__name__}.{k}={v!r}" for c, k, v, _ in BAD]
)
def test_invalid_argument_names_key_rule_and_value(cls, key, value, rule):
    kwargs = {**GOOD[cls], key: value}
    with pytest.raises(ValueError) as err:
        cls(**kwargs)
    message = str(err.value)
    assert f"Argument `{key}` must be" in message and rule in message
    assert f"Received: {key}=" in message


@pytest.mark.parametrize("cls", GOOD)
def test_good_arguments_build(cls):
    assert cls(**GOOD[cls])(0) >= 0


def test_composites_validate_their_children_and_boundaries():
    child = S.Constant(0.1)
    with pytest.raises(ValueError, match="Argument `schedule` must be a LearningRateSchedule"):
        S.LinearWarmup({"lr": 0.1}, warmup_steps=10)
    with pytest.raises(ValueError, match="Argument `warmup_steps` must be > 0"):
        S.LinearWarmup(child, warmup_steps=0)
    with pytest.raises(ValueError, match="a list of 1 steps"):
        S.Sequence([child, child], boundaries=[5, 10])
    with pytest.raises(ValueError, match="at least two schedules"):
        S.Sequence([child], boundaries=[])
    with pytest.raises(ValueError, match=r"Argument `factor` must be in \(0, 1\)"):
        ReduceOnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="Argument `mode` must be one of"):
        ReduceOnPlateau(mode="lowest")
    with pytest.raises(ValueError, match="Argument `min_lr` must be >= 0"):
        S.Scaled(child, min_lr=-1)
    with pytest.raises(ValueError, match="Argument `scale` must be > 0"):
        S.Scaled(child, scale=0)


def test_scale_functions_register_by_name_once():
    with pytest.raises(ValueError, match="already registered"):
        S.register_scale_fn("sine")(lambda x: x)
