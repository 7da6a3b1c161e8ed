"""Every schedule against an independent reference, Keras' equivalents, and golden values."""

import keras
import numpy as np
import pytest

import schedules as S
from tests import references as ref
from trainer.config.preview import curve

KS = keras.optimizers.schedules
N = 5000  # steps compared


def eager_values(schedule, steps):
    return np.array([float(schedule(k)) for k in steps], dtype=np.float64)


def reference_values(fn, steps, **kwargs):
    return np.array([fn(k, **kwargs) for k in steps], dtype=np.float64)


CASES = [
    (S.ExponentialDecay, ref.exponential, dict(initial_lr=0.1, decay_steps=300, decay_rate=0.5)),
    (
        S.ExponentialDecay,
        ref.exponential,
        dict(initial_lr=0.1, decay_steps=300, decay_rate=0.5, staircase=True, min_lr=0.004),
    ),
    (S.StepDecay, ref.step, dict(initial_lr=0.1, decay_rate=0.3, step_size=700, min_lr=1e-4)),
    (
        S.PiecewiseConstant,
        ref.piecewise,
        dict(boundaries=[100, 1000, 1001], values=[1.0, 0.5, 0.2, 0.01]),
    ),
    (
        S.PolynomialDecay,
        ref.polynomial,
        dict(initial_lr=0.1, decay_steps=1500, end_lr=0.001, power=2.0),
    ),
    (
        S.PolynomialDecay,
        ref.polynomial,
        dict(initial_lr=0.1, decay_steps=1500, end_lr=0.001, power=0.5, cycle=True),
    ),
    (S.InverseTimeDecay, ref.inverse_time, dict(initial_lr=0.1, decay_steps=100, decay_rate=0.5)),
    (
        S.InverseTimeDecay,
        ref.inverse_time,
        dict(initial_lr=0.1, decay_steps=100, decay_rate=0.5, staircase=True),
    ),
    (S.CosineDecay, ref.cosine, dict(initial_lr=0.1, decay_steps=3000, min_lr=0.001)),
    (
        S.CosineDecay,
        ref.cosine,
        dict(initial_lr=0.1, decay_steps=3000, warmup_steps=500, warmup_start_lr=0.01),
    ),
    (S.SGDR, ref.sgdr, dict(initial_lr=0.1, first_cycle_steps=300, t_mult=2.0, min_lr=0.001)),
    (S.SGDR, ref.sgdr, dict(initial_lr=0.1, first_cycle_steps=250, t_mult=1.0, m_mul=0.7)),
    (
        S.SGDR,
        ref.sgdr,
        dict(
            initial_lr=0.1,
            first_cycle_steps=100,
            t_mult=1.5,
            m_mul=0.9,
            min_lr=1e-3,
            reduction_steps=[1000, 3000],
            reduction_factor=0.2,
        ),
    ),
    (S.CyclicalLR, ref.clr, dict(base_lr=0.001, max_lr=0.006, step_size=400)),
    (S.CyclicalLR, ref.clr, dict(base_lr=0.001, max_lr=0.006, step_size=400, mode="triangular2")),
    (
        S.CyclicalLR,
        ref.clr,
        dict(base_lr=0.001, max_lr=0.006, step_size=400, mode="exp_range", gamma=0.9995),
    ),
    (S.OneCycle, ref.one_cycle, dict(max_lr=0.1, total_steps=4000)),
    (S.RangeTest, ref.range_test, dict(min_lr=1e-7, max_lr=10.0, num_steps=3000)),
    (S.RangeTest, ref.range_test, dict(min_lr=1e-4, max_lr=1.0, num_steps=3000, sweep="linear")),
    (
        S.OneCycle,
        ref.one_cycle,
        dict(
            max_lr=0.1, total_steps=4000, anneal_strategy="linear", three_phase=True, pct_start=0.25
        ),
    ),
    *[
        (
            S.WarmupStableDecay,
            ref.wsd,
            dict(
                initial_lr=0.1,
                warmup_steps=300,
                warmup_start_lr=0.001,
                stable_steps=2500,
                decay_steps=1200,
                decay_shape=shape,
                min_lr=0.002,
            ),
        )
        for shape in ("1-sqrt", "linear", "cosine")
    ],
    (S.WarmupStableDecay, ref.wsd, dict(initial_lr=0.1, stable_steps=0, decay_steps=4000)),
    (S.WarmupStableDecay, ref.wsd, dict(initial_lr=0.1, stable_steps=100, decay_steps=0)),
    (S.Rex, ref.rex, dict(initial_lr=0.1, decay_steps=4500)),
    (
        S.Rex,
        ref.rex,
        dict(initial_lr=0.1, decay_steps=3000, min_lr=0.001, beta=0.9, warmup_steps=500),
    ),
    (S.InverseSqrt, ref.inverse_sqrt, dict(initial_lr=0.1, timescale=400)),
    (
        S.InverseSqrt,
        ref.inverse_sqrt,
        dict(initial_lr=0.1, timescale=250, warmup_steps=250, warmup_start_lr=0.01),
    ),
]


@pytest.mark.parametrize(
    "cls,reference,kwargs", CASES, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CASES)]
)
def test_matches_reference_over_thousands_of_steps(cls, reference, kwargs):
    ours = curve(cls(**kwargs), N)
    expected = reference_values(reference, range(N), **kwargs)
    # float32 against float64: relative 1e-5, or 1e-6 of the peak where a curve nears 0
    # (e.g. (1 - step / decay_steps) ** 0.5 at the end of a cycle, where float32's
    # rounding of step / decay_steps dominates, in Keras as here).
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6 * expected.max())


KERAS_TWINS = [
    (S.ExponentialDecay(0.1, 300, 0.5), KS.ExponentialDecay(0.1, 300, 0.5)),
    (S.ExponentialDecay(0.1, 300, 0.5, staircase=True), KS.ExponentialDecay(0.1, 300, 0.5, True)),
    (
        S.PiecewiseConstant([100, 1000], [1.0, 0.5, 0.1]),
        KS.PiecewiseConstantDecay([100, 1000], [1.0, 0.5, 0.1]),
    ),
    (
        S.PolynomialDecay(0.1, 1500, 0.001, power=2.0),
        KS.PolynomialDecay(0.1, 1500, 0.001, power=2.0),
    ),
    (
        S.PolynomialDecay(0.1, 1500, 0.001, 0.5, cycle=True),
        KS.PolynomialDecay(0.1, 1500, 0.001, 0.5, cycle=True),
    ),
    (S.InverseTimeDecay(0.1, 100, 0.5), KS.InverseTimeDecay(0.1, 100, 0.5)),
    (S.InverseTimeDecay(0.1, 100, 0.5, True), KS.InverseTimeDecay(0.1, 100, 0.5, True)),
    (S.CosineDecay(0.1, 3000), KS.CosineDecay(0.1, 3000)),
    (S.CosineDecay(0.1, 3000, min_lr=0.002), KS.CosineDecay(0.1, 3000, alpha=0.02)),
    (
        S.CosineDecay(0.1, 3000, warmup_steps=500, warmup_start_lr=0.01),
        KS.CosineDecay(0.01, 3000, warmup_target=0.1, warmup_steps=500),
    ),
    (S.SGDR(0.1, 300), KS.CosineDecayRestarts(0.1, 300)),
    (
        S.SGDR(0.1, 250, t_mult=1.0, m_mul=0.7),
        KS.CosineDecayRestarts(0.1, 250, t_mul=1.0, m_mul=0.7),
    ),
    (
        S.SGDR(0.1, 100, t_mult=1.5, m_mul=0.9),
        KS.CosineDecayRestarts(0.1, 100, t_mul=1.5, m_mul=0.9),
    ),
]


@pytest.mark.parametrize("ours,theirs", KERAS_TWINS, ids=[type(k).__name__ for _, k in KERAS_TWINS])
def test_equals_keras_where_keras_has_the_curve(ours, theirs):
    a, b = curve(ours, N), curve(theirs, N)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "first,t_mult,step", [(3, 2.0, 98301), (100, 3.0, 4000), (1000, 3.0, 40000)]
)
def test_sgdr_restarts_exactly_where_float32_rounding_misleads(first, t_mult, step):
    # At these restarts a float32 closed form lands in the previous cycle (Keras does at
    # 98301; a float32 index did at the other two): the rate must be back at the peak.
    sgdr = S.SGDR(0.1, first, t_mult=t_mult)
    expected = [ref.sgdr(k, 0.1, first, t_mult=t_mult) for k in (step - 1, step, step + 1)]
    assert expected[1] == pytest.approx(0.1)
    np.testing.assert_allclose(
        eager_values(sgdr, [step - 1, step, step + 1]), expected, rtol=1e-4, atol=1e-7
    )


def test_triangular2_golden():
    clr = S.CyclicalLR(base_lr=0.1, max_lr=1.0, step_size=4, mode="triangular2")
    golden = [0.1, 0.325, 0.55, 0.775, 1, 0.775, 0.55, 0.325, 0.1, 0.2125, 0.325, 0.4375, 0.55]
    np.testing.assert_allclose(eager_values(clr, range(13)), golden, rtol=1e-6)


def test_one_cycle_cos_golden():
    oc = S.OneCycle(max_lr=25, total_steps=10, div_factor=25, final_div_factor=2)
    golden = [1, 13, 25, 23.787, 20.388, 15.476, 10.024, 5.112, 1.713, 0.5]
    np.testing.assert_allclose(eager_values(oc, range(10)), golden, atol=5e-4)


def test_one_cycle_three_phase_linear_golden():
    # The golden row 1 9 17 25 17 9 1 0.75 0.5 0.25 peaks at step 3 and ends at 0.25:
    # PyTorch's OneCycleLR gives it with pct_start=0.4 and final_div_factor=4.
    oc = S.OneCycle(
        max_lr=25,
        total_steps=10,
        pct_start=0.4,
        div_factor=25,
        final_div_factor=4,
        anneal_strategy="linear",
        three_phase=True,
    )
    golden = [1, 9, 17, 25, 17, 9, 1, 0.75, 0.5, 0.25]
    np.testing.assert_allclose(eager_values(oc, range(10)), golden, rtol=1e-6)


def test_one_cycle_three_phase_linear_with_the_two_phase_arguments():
    oc = S.OneCycle(
        max_lr=25,
        total_steps=10,
        div_factor=25,
        final_div_factor=2,
        anneal_strategy="linear",
        three_phase=True,
    )
    np.testing.assert_allclose(
        eager_values(oc, range(10)), [1, 13, 25, 13, 1, 0.9, 0.8, 0.7, 0.6, 0.5], rtol=1e-6
    )


def test_clr_first_peak_at_step_size_and_sine_scale():
    clr = S.CyclicalLR(0.0, 1.0, 5, scale_fn="sine")
    values = eager_values(clr, range(31))
    assert values[0] == 0 and values[5] == pytest.approx(1.0)
    # sine of the cycle number: cycle 1 -> 1, cycle 2 -> 0.5, cycle 3 -> 0
    assert values[15] == pytest.approx(0.5) and values[25] == pytest.approx(0.0, abs=1e-7)
    by_step = S.CyclicalLR(0.0, 1.0, 5, scale_fn="sine", scale_mode="iterations")
    assert float(by_step(5)) == pytest.approx(0.5 * (1 + np.sin(5 * np.pi / 2)))


def test_step_decay_does_not_fire_at_step_zero():
    sched = S.StepDecay(0.1, 0.5, step_size=10)
    assert eager_values(sched, [0, 9, 10, 19, 20]).tolist() == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025]
    )


def test_floors_and_annealing_targets():
    assert float(S.ExponentialDecay(1.0, 1, 0.5, min_lr=0.01)(100)) == pytest.approx(0.01)
    assert float(S.StepDecay(1.0, 0.5, 1, min_lr=0.01)(100)) == pytest.approx(0.01)
    # Cosine anneals to min_lr and holds it.
    cos = S.CosineDecay(1.0, 100, min_lr=0.1)
    assert float(cos(100)) == pytest.approx(0.1) and float(cos(10**6)) == pytest.approx(0.1)


def test_sgdr_reductions_multiply_the_whole_curve():
    plain = S.SGDR(0.1, 100, t_mult=1.0, min_lr=0.01)
    reduced = S.SGDR(
        0.1, 100, t_mult=1.0, min_lr=0.01, reduction_steps=[150, 250], reduction_factor=0.1
    )
    a, b = curve(plain, 400), curve(reduced, 400)
    np.testing.assert_allclose(b[:150], a[:150])
    np.testing.assert_allclose(b[150:250], 0.1 * a[150:250], rtol=1e-6)
    np.testing.assert_allclose(b[250:], 0.01 * a[250:], rtol=1e-6)


def test_warmup_then_schedule_counts_from_the_end_of_warmup():
    inner = S.StepDecay(0.1, 0.5, step_size=10)
    warm = S.LinearWarmup(inner, warmup_steps=5, start_lr=0.0)
    values = eager_values(warm, range(30))
    np.testing.assert_allclose(values[:5], [0.0, 0.02, 0.04, 0.06, 0.08], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(values[5:], eager_values(inner, range(25)), rtol=1e-6)


def test_sequence_joins_children_each_from_its_own_start():
    a, b, c = S.Constant(0.3), S.StepDecay(0.1, 0.5, 2), S.CyclicalLR(0.0, 1.0, 3)
    seq = S.Sequence([a, b, c], boundaries=[4, 10])
    values = eager_values(seq, range(20))
    np.testing.assert_allclose(values[:4], 0.3, rtol=1e-6)
    np.testing.assert_allclose(values[4:10], eager_values(b, range(6)), rtol=1e-6)
    np.testing.assert_allclose(values[10:], eager_values(c, range(10)), rtol=1e-6)


def test_curves_that_must_be_monotone_are():
    for sched in [
        S.ExponentialDecay(0.1, 30, 0.9),
        S.StepDecay(0.1, 0.5, 50),
        S.PolynomialDecay(0.1, 900, 0.0),
        S.InverseTimeDecay(0.1, 10, 1.0),
        S.CosineDecay(0.1, 900),
    ]:
        values = curve(sched, 1000)
        assert np.all(np.diff(values) <= 0), sched


# Hugging Face transformers 5.25's own numbers (`get_wsd_schedule(optimizer, 100,
# num_decay_steps=200, num_stable_steps=600, decay_type=..., min_lr_ratio=0.1)` and
# `get_inverse_sqrt_schedule(optimizer, 100[, timescale=400])` at lr 0.1, read before each
# step as Keras reads ours), copied here; HF's warmup starts at the floor.
HF_STEPS = [0, 1, 50, 99, 100, 101, 500, 699, 700, 701, 750, 850, 899, 900, 901, 1000]
HF_WSD = {
    "linear": [0.01, 0.0109, 0.055, 0.0991] + [0.1] * 5 + [0.09955, 0.0775, 0.0325, 0.01045],
    "cosine": [0.01, 0.0109, 0.055, 0.0991]
    + [0.1] * 5
    + [0.09999444846167473, 0.08681980515339464, 0.023180194846605367, 0.010005551538325275],
    "1-sqrt": [0.01, 0.0109, 0.055, 0.0991]
    + [0.1] * 5
    + [0.09363603896932109, 0.055, 0.022057713659400527, 0.010225281955329991],
}
HF_SQRT_STEPS = [0, 1, 50, 99, 100, 101, 200, 400, 1000, 5000]
HF_INVERSE_SQRT = {
    100: [
        0.0,
        0.001,
        0.05,
        0.099,
        0.1,
        0.09950371902099893,
        0.07071067811865475,
        0.05,
        0.0316227766016838,
        0.01414213562373095,
    ],
    400: [
        0.0,
        0.001,
        0.05,
        0.099,
        0.1,
        0.09987523388778446,
        0.08944271909999159,
        0.07559289460184544,
        0.05547001962252292,
        0.02747211278973781,
    ],
}


@pytest.mark.parametrize("shape", sorted(HF_WSD))
def test_wsd_gives_hugging_faces_numbers(shape):
    wsd = S.WarmupStableDecay(
        0.1, 600, 200, shape, min_lr=0.01, warmup_steps=100, warmup_start_lr=0.01
    )
    golden = HF_WSD[shape] + [0.01] * 3  # the floor from the end of the decay on
    np.testing.assert_allclose(eager_values(wsd, HF_STEPS), golden, rtol=1e-6)


@pytest.mark.parametrize("timescale", sorted(HF_INVERSE_SQRT))
def test_inverse_sqrt_gives_hugging_faces_numbers(timescale):
    schedule = S.InverseSqrt(0.1, timescale, warmup_steps=100)
    golden = HF_INVERSE_SQRT[timescale]
    np.testing.assert_allclose(eager_values(schedule, HF_SQRT_STEPS), golden, rtol=1e-6, atol=1e-9)


def test_rex_golden():
    # (1 - p) / (1 - p / 2) at p = 0, 1/4, 1/2, 3/4, 1: 1, 6/7, 2/3, 2/5, 0.
    rex = S.Rex(1.0, decay_steps=4)
    np.testing.assert_allclose(eager_values(rex, range(6)), [1, 6 / 7, 2 / 3, 0.4, 0, 0], atol=1e-7)


def test_linear_to_zero_is_the_linear_config():
    from tests.project import compose_config
    from trainer.config.build import from_config

    cfg = compose_config("preview", ["schedule=linear", "schedule.warmup_steps=10"])
    schedule = from_config(cfg, steps_per_epoch=10, run_steps=110)
    values = eager_values(schedule, range(112))
    peak = cfg.optimizer.learning_rate
    expected = [ref.wsd(k, peak, 0, 100, "linear", warmup_steps=10) for k in range(112)]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-7 * peak)
    assert values[110] == 0.0 and values[109] > 0
