"""From composed config to schedule: epochs, run lengths, wrappers and config errors."""

import pytest

import schedules as S
from schedules.build import build_schedule, from_config, to_steps
from tests.conftest import compose_config


def build(overrides, steps_per_epoch=100, run_steps=1000):
    cfg = compose_config("preview", overrides)
    return from_config(cfg, steps_per_epoch=steps_per_epoch, run_steps=run_steps)


def test_epoch_keys_become_steps_with_the_steps_per_epoch():
    sgdr = build(
        ["schedule=sgdr", "schedule.first_cycle_epochs=1.5", "schedule.reduction_epochs=[3,6]"]
    )
    assert sgdr.first_cycle_steps == 150 and sgdr.reduction_steps == [300, 600]
    piecewise = build(["schedule=piecewise"])
    assert piecewise.boundaries == [300, 600]


def test_null_run_lengths_are_the_rest_of_the_run():
    assert build(["schedule=one_cycle"]).total_steps == 1000
    cosine = build(["schedule=cosine", "schedule.warmup_steps=200"])
    assert cosine.decay_steps == 800 and cosine.warmup_steps == 200
    # With a warmup wrapper, the wrapped schedule gets what is left after it.
    warm = build(["schedule=one_cycle", "warmup=linear", "warmup.warmup_epochs=2"])
    assert isinstance(warm, S.LinearWarmup) and warm.warmup_steps == 200
    assert warm.schedule.total_steps == 800


def test_both_units_given_is_an_error_that_says_how_to_fix_it():
    with pytest.raises(
        ValueError,
        match=r"give either decay_steps or decay_epochs, not both.*"
        r"schedule.decay_steps=null",
    ):
        build(["schedule=exponential", "schedule.decay_steps=500"])


def test_epochs_without_steps_per_epoch_is_an_error():
    with pytest.raises(
        ValueError, match=r"schedule.step_epochs=2 is in epochs.*schedule.step_size"
    ):
        build(["schedule=step"], steps_per_epoch=None)


def test_invalid_value_from_config_names_group_target_and_key():
    with pytest.raises(
        ValueError,
        match=r"schedule \(schedules.cyclical.CyclicalLR\): "
        r"Argument `max_lr` must be >= base_lr",
    ):
        build(["schedule=clr", "schedule.max_lr=1e-5"])


def test_unknown_key_is_refused_by_composition():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="max_learning_rate"):
        compose_config("preview", ["schedule=clr", "schedule.max_learning_rate=0.1"])


def test_nested_schedules_in_a_sequence_convert_their_epochs():
    seq = build(["schedule=sequence"])
    assert seq.boundaries == [100]
    assert seq.schedules[1].decay_steps == 400


def test_to_steps_leaves_step_configs_alone():
    cfg = {"_target_": "x", "decay_steps": 7, "decay_epochs": None}
    assert to_steps(cfg, steps_per_epoch=100) == {"_target_": "x", "decay_steps": 7}


def test_keys_the_schedule_does_not_take_are_named_with_the_fix():
    # The Fashion-MNIST preset sets schedule.lr for its constant rate; switching schedule
    # keeps that key, and the error says how to drop it.
    cfg = compose_config("train", ["experiment=fashion_mlp_sgd", "schedule=cosine"])
    with pytest.raises(
        ValueError,
        match=r"schedule \(schedules.cosine.CosineDecay\) has no key "
        r"'lr'; it takes initial_lr, decay_steps.*~schedule\.lr",
    ):
        build_schedule(cfg.schedule, steps_per_epoch=10, run_steps=100)
    fixed = compose_config(
        "train",
        [
            "experiment=fashion_mlp_sgd",
            "schedule=cosine",
            "~schedule.lr",
            "schedule.initial_lr=0.2",
        ],
    )
    assert build_schedule(fixed.schedule, steps_per_epoch=10, run_steps=100).initial_lr == 0.2
