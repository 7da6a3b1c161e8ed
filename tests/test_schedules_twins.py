"""Our schedules against the JAX and PyTorch libraries' own, where they have the family.

These run on the backend whose library they use (`KERAS_BACKEND=jax`: optax;
`KERAS_BACKEND=torch`: `torch.optim.lr_scheduler`): `tests/test_backends.py` runs this file
under each. Our curve is computed on that backend (`curve`: vectorised there), theirs by the
library itself, in its own precision (float32 in optax, Python floats in PyTorch).
"""

import keras
import numpy as np
import pytest

import schedules as S
from trainer.config.preview import curve

N = 5000
BACKEND = keras.backend.backend()


def close(ours, theirs, atol_of_peak=1e-6):
    # float32 against the library's arithmetic: relative 1e-5, or 1e-6 of the peak where a
    # curve nears 0 (as tests/test_schedules_exact.py).
    theirs = np.asarray(theirs, dtype=np.float64)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=atol_of_peak * theirs.max())


def optax_cases():
    optax = pytest.importorskip("optax")
    return [
        (S.CosineDecay(0.1, 3000, min_lr=0.002), optax.cosine_decay_schedule(0.1, 3000, 0.02)),
        (
            # optax's decay_steps count the warmup; Keras' (and ours) come after it.
            S.CosineDecay(0.1, 3000, warmup_steps=500, warmup_start_lr=0.01),
            optax.warmup_cosine_decay_schedule(0.01, 0.1, 500, 3500, end_value=0.0),
        ),
        (S.ExponentialDecay(0.1, 300, 0.5), optax.exponential_decay(0.1, 300, 0.5)),
        (
            S.ExponentialDecay(0.1, 300, 0.5, staircase=True),
            optax.exponential_decay(0.1, 300, 0.5, staircase=True),
        ),
        (
            S.PolynomialDecay(0.1, 1500, 0.001, power=2.0),
            optax.polynomial_schedule(0.1, 0.001, 2.0, 1500),
        ),
        (
            # optax's boundaries take effect at the boundary, Keras' (and ours) one step after.
            S.PiecewiseConstant([100, 1000], [1.0, 0.5, 0.2]),
            optax.piecewise_constant_schedule(1.0, {101: 0.5, 1001: 0.4}),
        ),
        # WSD with a linear or cosine cooldown: optax has no WSD, but joins its pieces.
        (
            S.WarmupStableDecay(0.1, 2500, 1200, "linear", 0.002, 300, 0.001),
            optax.join_schedules(
                [
                    optax.linear_schedule(0.001, 0.1, 300),
                    optax.constant_schedule(0.1),
                    optax.linear_schedule(0.1, 0.002, 1200),
                ],
                [300, 2800],
            ),
        ),
        (
            S.WarmupStableDecay(0.1, 2500, 1200, "cosine", 0.002, 300, 0.001),
            optax.join_schedules(
                [
                    optax.linear_schedule(0.001, 0.1, 300),
                    optax.constant_schedule(0.1),
                    optax.cosine_decay_schedule(0.1, 1200, alpha=0.02),
                ],
                [300, 2800],
            ),
        ),
        (  # linear decay to zero (conf/schedule/linear.yaml)
            S.WarmupStableDecay(0.1, 0, 4500, "linear", warmup_steps=500),
            optax.join_schedules(
                [optax.linear_schedule(0.0, 0.1, 500), optax.linear_schedule(0.1, 0.0, 4500)],
                [500],
            ),
        ),
    ]


@pytest.mark.skipif(BACKEND != "jax", reason="optax's schedules: on JAX")
def test_equal_to_optax_where_optax_has_the_family():
    for ours, theirs in optax_cases():
        close(curve(ours, N), np.asarray(theirs(np.arange(N))))


def torch_values(make, steps=N, lr=0.1):
    """The rate PyTorch's scheduler gives each step: read before the step, as Keras does."""
    torch = pytest.importorskip("torch")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make(torch.optim.lr_scheduler, optimizer)
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


TORCH_CASES = [
    (
        S.CosineDecay(0.1, 3000, min_lr=0.002),
        lambda s, o: s.CosineAnnealingLR(o, 3000, 0.002),
        3000,
    ),
    # A factor float32 holds exactly (1 - 2**-11): the curve is then the same number, where
    # 0.999 ** 5000 in float32 is 0.999's float32 rounding to the 5000th power (6e-5 away).
    (S.ExponentialDecay(0.1, 1, 1 - 2**-11), lambda s, o: s.ExponentialLR(o, 1 - 2**-11), N),
    (S.StepDecay(0.1, 0.3, 700), lambda s, o: s.StepLR(o, 700, 0.3), N),
    (
        S.SGDR(0.1, 300, t_mult=2.0, min_lr=0.001),
        lambda s, o: s.CosineAnnealingWarmRestarts(o, 300, 2, 0.001),
        N,
    ),
    (
        S.CyclicalLR(0.001, 0.006, 400),
        lambda s, o: s.CyclicLR(o, 0.001, 0.006, 400, cycle_momentum=False),
        N,
    ),
    (
        S.CyclicalLR(0.001, 0.006, 400, mode="triangular2"),
        lambda s, o: s.CyclicLR(o, 0.001, 0.006, 400, mode="triangular2", cycle_momentum=False),
        N,
    ),
    (S.OneCycle(0.1, 4000), lambda s, o: s.OneCycleLR(o, 0.1, total_steps=4000), 4000),
    (
        S.OneCycle(0.1, 4000, anneal_strategy="linear", three_phase=True, pct_start=0.25),
        lambda s, o: s.OneCycleLR(
            o, 0.1, total_steps=4000, anneal_strategy="linear", three_phase=True, pct_start=0.25
        ),
        4000,
    ),
    (S.PolynomialDecay(0.1, 1500, 0.0, power=2.0), lambda s, o: s.PolynomialLR(o, 1500, 2.0), N),
    (  # WSD with a linear cooldown, from PyTorch's pieces (its warmup cannot start at 0)
        S.WarmupStableDecay(0.1, 2500, 1200, "linear", 0.002, 300, 0.001),
        lambda s, o: s.SequentialLR(
            o,
            [
                s.LinearLR(o, 0.01, 1.0, 300),
                s.ConstantLR(o, 1.0, 0),
                s.LinearLR(o, 1.0, 0.02, 1200),
            ],
            [300, 2800],
        ),
        N,
    ),
    (  # linear decay to zero (conf/schedule/linear.yaml)
        S.WarmupStableDecay(0.1, 0, 4500, "linear"),
        lambda s, o: s.LinearLR(o, 1.0, 0.0, 4500),
        N,
    ),
]


@pytest.mark.skipif(BACKEND != "torch", reason="torch.optim.lr_scheduler: on PyTorch")
@pytest.mark.parametrize("ours,make,steps", TORCH_CASES, ids=[repr(c[0])[:40] for c in TORCH_CASES])
def test_equal_to_torch_where_pytorch_has_the_family(ours, make, steps):
    close(curve(ours, steps), torch_values(make, steps))
